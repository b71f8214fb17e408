"""Batched generation with left padding, on prompts rendered as training renders them.

Prompts go through PairEncoder.encode_prompt, so the base model and every adapter see the same
prompt tokens training used. A generation stops at the token that ends the assistant turn (or
EOS), or after max_new_tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from deft_core.encoding import PairEncoder
from deft_core.pairs import Message
from deft_core.progress import ProgressTracker

if TYPE_CHECKING:
    from deft_core.compare.evaluate import GenerationSettings

logger = logging.getLogger(__name__)


@dataclass
class Generation:
    """One generated output: its prompt ids (after any cut), its new token ids and its text."""

    prompt_ids: list[int]
    output_ids: list[int]  # the new tokens before the stop token; the stop token is not included
    text: str  # output_ids decoded without special tokens, stripped
    finished: bool  # True when the model ended its turn before max_new_tokens
    prompt_cut: int = 0  # tokens removed from the start of the prompt


def stop_token_ids(encoder: PairEncoder) -> list[int]:
    """Return the ids that end a generation: the template's end-of-turn token and EOS."""
    stops = list(encoder.end_ids[-1:])
    eos = encoder.tokenizer.eos_token_id
    if eos is not None and eos not in stops:
        stops.append(eos)
    return stops


def fit_prompt(prompt_ids: list[int], max_length: int, max_new_tokens: int) -> tuple[list[int], int]:
    """Cut a prompt's start so that prompt + max_new_tokens fits max_length; return (ids, tokens cut).

    The prompt keeps at least half of max_length, so a large max_new_tokens may overrun max_length.
    """
    keep = max(max_length - max_new_tokens, max_length // 2)
    cut = max(0, len(prompt_ids) - keep)
    return prompt_ids[cut:], cut


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the left to the longest sequence. Returns (input_ids, attention_mask), each (B, L)."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
            attention[row, width - len(sequence) :] = 1
    return input_ids, attention


def split_at_stop(new_ids: list[int], stops: list[int]) -> tuple[list[int], bool]:
    """Return the ids before the first stop token and whether a stop token was found."""
    for index, token_id in enumerate(new_ids):
        if token_id in stops:
            return new_ids[:index], True
    return new_ids, False


def sampling_arguments(settings: GenerationSettings) -> dict[str, Any]:
    if not settings.do_sample:
        # Unset the sampling fields explicitly: a model's generation_config may carry its own.
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": None}


def generate(
    model: Any,
    encoder: PairEncoder,
    prompts: list[list[Message]],
    settings: GenerationSettings,
    max_length: int,
    progress: ProgressTracker | None = None,
) -> list[Generation]:
    """Generate one output per prompt, in batches of settings.batch_size, in the prompts' order.

    Batches hold prompts of similar length, to pad less. Sampling draws from torch's generator
    seeded with settings.seed inside a forked RNG state, so the caller's random state is left as
    it was. The same seed, settings and batch size give the same outputs on the same device.
    """
    tokenizer = encoder.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encoder.end_ids[-1]
    stops = stop_token_ids(encoder)
    fitted = [fit_prompt(encoder.encode_prompt(p), max_length, settings.max_new_tokens) for p in prompts]
    cut = sum(1 for _, removed in fitted if removed)
    if cut:
        logger.warning("max_length %d cuts the start of %d of %d prompts", max_length, cut, len(prompts))
    order = sorted(range(len(prompts)), key=lambda i: len(fitted[i][0]), reverse=True)
    device = next(model.parameters()).device
    results: list[Generation | None] = [None] * len(prompts)

    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
        torch.manual_seed(settings.seed)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            input_ids, attention = left_pad([fitted[i][0] for i in batch], pad_id)
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=stops,
                **sampling_arguments(settings),
            )
            new_tokens = output[:, input_ids.shape[1] :].tolist()
            for index, row in zip(batch, new_tokens, strict=True):
                ids, finished = split_at_stop(row, stops)
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                results[index] = Generation(fitted[index][0], ids, text, finished, fitted[index][1])
            if progress is not None:
                progress.advance(len(batch), tokens=sum(len(results[i].output_ids) for i in batch))
    return results  # type: ignore[return-value]
