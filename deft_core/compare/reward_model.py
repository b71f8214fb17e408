"""An optional reward model: any single-score sequence-classification model scores prompt + output.

The input is the dialogue with the output as the final assistant turn, rendered with the reward
model's own chat template when its tokenizer has one. Otherwise the prompt text and the output
go in as a text pair, the input layout of encoder reward models such as DeBERTa.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deft_core.errors import DeftError
from deft_core.models import first_line, resolve_device, resolve_dtype
from deft_core.pairs import Message, PreferencePair

logger = logging.getLogger(__name__)


@dataclass
class RewardModel:
    """A loaded sequence-classification model with one output (num_labels = 1) and its tokenizer."""

    spec: str
    model: Any
    tokenizer: Any

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


@lru_cache(maxsize=1)
def load_reward_model(spec: str, device: str = "auto", dtype: str = "auto") -> RewardModel:
    """Load a reward model from a Hub id or a local folder; the last one loaded is kept in memory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(spec).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise DeftError(f"reward model {spec}: not a transformers model folder (config.json is missing)")
    location = str(path) if path.exists() else spec
    torch_device = resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            location, dtype=resolve_dtype(dtype, torch_device), trust_remote_code=False
        )
    except (OSError, ValueError) as error:
        raise DeftError(f"cannot load reward model {spec!r}: {first_line(error)}") from error
    if model.config.num_labels != 1:
        raise DeftError(
            f"reward model {spec!r} has {model.config.num_labels} outputs; deft needs a reward model "
            "with a single score (num_labels = 1)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A dialogue longer than max_length loses its start, so the output being scored stays whole.
    tokenizer.truncation_side = "left"
    # Sequence-classification heads pool at the last token that is not padding, found by pad id.
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(torch_device).eval()
    logger.info("loaded reward model %s on %s", spec, torch_device)
    return RewardModel(spec, model, tokenizer)


def reward_inputs(tokenizer: Any, prompts: list[list[Message]], outputs: list[str], max_length: int) -> dict:
    """Tokenise prompt + output pairs for the reward model, padded on the right, cut at max_length."""
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": output}], tokenize=False)
            for prompt, output in zip(prompts, outputs, strict=True)
        ]
        # The template writes its own special tokens.
        return tokenizer(
            texts,
            add_special_tokens=False,
            padding=True,
            truncation=True,
            max_length=limit,
            return_tensors="pt",
        )
    prompt_texts = [PreferencePair("", prompt, "", "").prompt_text for prompt in prompts]
    return tokenizer(
        prompt_texts, outputs, padding=True, truncation=True, max_length=limit, return_tensors="pt"
    )


def reward_model_scores(
    reward_model: RewardModel,
    prompts: list[list[Message]],
    outputs: list[str],
    batch_size: int = 8,
    max_length: int = 1024,
) -> np.ndarray:
    """Return the reward model's score of each prompt + output. Shape: (N,), float64."""
    scores = np.zeros(len(outputs), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(outputs), batch_size):
            stop = start + batch_size
            inputs = reward_inputs(
                reward_model.tokenizer, prompts[start:stop], outputs[start:stop], max_length
            )
            inputs = {name: tensor.to(reward_model.device) for name, tensor in inputs.items()}
            logits = reward_model.model(**inputs).logits  # (B, 1)
            scores[start:stop] = logits[:, 0].float().cpu().numpy()
    return scores
