"""The LoRA policy and its reference: one model in memory, the adapter switched off for pi_ref.

A forward pass returns, per pair, the summed response-token log-probabilities and the distribution
reward r_theta (deft_core.rewards), both computed from the logits that predict response tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from deft_core.encoding import EncodedPair
from deft_core.models import LoadedModel
from deft_core.rewards import TOKEN_REWARDS
from deft_core.scorer import LOGIT_TRANSFORMS
from deft_core.training.config import TrainConfig
from deft_core.training.data import Batch, collate
from deft_core.training.dropout import use_lane_dropout
from deft_core.training.losses import PairBatchOutputs

logger = logging.getLogger(__name__)


def add_lora(loaded: LoadedModel, config: TrainConfig):
    """Wrap the model in a peft LoRA adapter; only the adapter's weights are trainable.

    peft keeps the adapter weights in float32 when the base model is bf16 or fp16
    (autocast_adapter_dtype, the default), so AdamW updates them in full precision. On a CPU the
    adapters' dropout draws its masks with LaneDropout (deft_core.training.dropout).
    """
    from peft import LoraConfig, get_peft_model

    modules = (
        config.target_modules[0] if config.target_modules == ["all-linear"] else list(config.target_modules)
    )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=modules,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(loaded.model, lora)
    except ValueError as error:
        raise_for_modules(error, config)
    if loaded.device.type == "cpu":
        # On GPUs torch's dropout kernel is fast; on a CPU drawing its masks is not.
        use_lane_dropout(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("LoRA r=%d on %s: %d trainable of %d parameters", config.lora_r, modules, trainable, total)
    return model


def raise_for_modules(error: ValueError, config: TrainConfig) -> None:
    from deft_core.errors import DeftError

    raise DeftError(
        f"cannot add LoRA to target_modules {config.target_modules}: {error}. "
        "Use module names of this model (for Llama-style models: q_proj, k_proj, v_proj, o_proj, "
        "gate_proj, up_proj, down_proj) or ['all-linear']"
    ) from error


@dataclass
class ForwardResult:
    """Per-sequence sums for the 2B sequences of B pairs, chosen ones first. Shapes: (2B,)."""

    logps: torch.Tensor
    rewards: torch.Tensor
    tokens: torch.Tensor


class PolicyForward:
    """Computes response log-probs and distribution rewards with a (peft) causal LM."""

    def __init__(self, model, q_diff: np.ndarray, reward_form: str, pad_id: int) -> None:
        self.model = model
        if reward_form not in TOKEN_REWARDS:
            raise ValueError(f"unknown reward form {reward_form!r}; allowed: {', '.join(TOKEN_REWARDS)}")
        self.reward_form = reward_form
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder = base.get_decoder()
        self.lm_head = base.get_output_embeddings()
        self.q_diff = torch.as_tensor(q_diff, dtype=torch.float32, device=self.device)
        # Project only the hidden states that predict response tokens onto the vocabulary,
        # unless the model rescales its logits after the head (then use the model's own logits).
        self.project_hidden = isinstance(self.lm_head, torch.nn.Linear) and not any(
            getattr(base.config, name, None) not in (None, 1, 1.0) for name in LOGIT_TRANSFORMS
        )

    def response_logits(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (logits (N, V), target ids (N,), sequence of each (N,)) for the N response tokens."""
        packed = batch.packed.to(self.device)
        if self.project_hidden:
            hidden = self.decoder(**packed.model_inputs(self.model)).last_hidden_state
            logits = self.lm_head(hidden[packed.rows, packed.columns])
        else:
            logits = self.model(**packed.model_inputs(self.model)).logits[packed.rows, packed.columns]
        return logits, packed.targets, packed.sequence

    def __call__(self, batch: Batch, need_rewards: bool = True) -> ForwardResult:
        logits, targets, sequence = self.response_logits(batch)
        count = batch.packed.sequences
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        token_logps = log_probs.gather(-1, targets[:, None]).squeeze(-1)
        zeros = torch.zeros(count, device=self.device)
        logps = zeros.index_add(0, sequence, token_logps)
        tokens = zeros.index_add(0, sequence, torch.ones_like(token_logps))
        if need_rewards:
            # TOKEN_REWARDS[form] on the log-probs already computed: Q_diff . log p or Q_diff . p.
            weights = log_probs if self.reward_form == "logprob" else log_probs.exp()
            token_rewards = weights @ self.q_diff
            rewards = zeros.index_add(0, sequence, token_rewards) / tokens.clamp(min=1)
        else:
            rewards = zeros
        return ForwardResult(chosen_first(logps), chosen_first(rewards), chosen_first(tokens))

    def pair_outputs(
        self, batch: Batch, reference: torch.Tensor, need_rewards: bool = True
    ) -> PairBatchOutputs:
        """Run the policy on a batch; `reference` holds (B, 2) reference log-probs of its pairs."""
        result = self(batch, need_rewards)
        pairs = batch.pairs
        reference = reference.to(self.device)
        return PairBatchOutputs(
            chosen_logps=result.logps[:pairs],
            rejected_logps=result.logps[pairs:],
            chosen_tokens=result.tokens[:pairs],
            rejected_tokens=result.tokens[pairs:],
            chosen_reward=result.rewards[:pairs],
            rejected_reward=result.rewards[pairs:],
            ref_chosen_logps=reference[:, 0],
            ref_rejected_logps=reference[:, 1],
        )


def chosen_first(values: torch.Tensor) -> torch.Tensor:
    """Reorder per-sequence values from (chosen 0, rejected 0, chosen 1, ...) to chosen ones first."""
    return values.view(-1, 2).T.reshape(-1)


def reference_logps(forward: PolicyForward, encoded: list[EncodedPair], batch_size: int) -> torch.Tensor:
    """Compute log pi_ref of both responses of every pair with the adapter disabled. Shape: (N, 2)."""
    result = torch.zeros(len(encoded), 2)
    model = forward.model
    was_training = model.training
    model.eval()
    with torch.inference_mode(), model.disable_adapter():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = collate(chunk, list(range(start, start + len(chunk))), forward.pad_id)
            logps = forward(batch, need_rewards=False).logps.float().cpu()
            result[start : start + len(chunk), 0] = logps[: len(chunk)]
            result[start : start + len(chunk), 1] = logps[len(chunk) :]
    model.train(was_training)
    return result


def reusable_reference(
    score_table,
    score_meta: dict | None,
    pair_ids: list[str],
    encoded: list[EncodedPair],
    loaded: LoadedModel,
    template: str,
    max_length: int,
) -> tuple[torch.Tensor, np.ndarray]:
    """Take reference log-probs from a score table where they equal what training would compute.

    Scores hold the base model's summed response log-probs. They are reused for a pair when the
    model weights, dtype and template match and the pair is cut identically: either the same
    max_length, or neither length limit cuts it. Returns (values (N, 2), reusable mask (N,)).
    """
    values = torch.zeros(len(pair_ids), 2)
    usable = np.zeros(len(pair_ids), dtype=bool)
    if score_table is None or score_meta is None:
        return values, usable
    identity = score_meta.get("identity", {})
    scored_length = int(score_meta["options"]["max_length"])
    if (
        identity.get("model") != loaded.model_hash
        or identity.get("dtype") != str(loaded.dtype)
        or score_meta["options"]["template"] != template
    ):
        logger.info(
            "score file was computed with another model, dtype or template; computing reference log-probs"
        )
        return values, usable
    rows = score_table.set_index("pair_id")
    for index, (pair_id, item) in enumerate(zip(pair_ids, encoded, strict=True)):
        if pair_id not in rows.index:
            continue
        uncut = not item.truncated and "truncated" not in str(rows.at[pair_id, "flags"])
        if scored_length == max_length or uncut:
            values[index, 0] = float(rows.at[pair_id, "logp_chosen"])
            values[index, 1] = float(rows.at[pair_id, "logp_rejected"])
            usable[index] = bool(np.isfinite(values[index]).all())
    return values, usable
