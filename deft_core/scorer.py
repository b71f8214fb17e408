"""Teacher-forced passes of a causal LM over prompts and their responses, batched by length.

For each sequence the scorer returns the distribution reward (see deft_core.rewards), the summed
log-probability of the response tokens, and optionally the per-token rewards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from deft_core.packing import PackedRows, pack_groups
from deft_core.rewards import TOKEN_REWARDS, token_rewards_from_hidden

logger = logging.getLogger(__name__)

# Positions projected onto the vocabulary at once: bounds the (chunk, V) float32 logits buffer.
VOCAB_CHUNK = 512
# Config attributes that change logits after the LM head; the hidden-state shortcut skips them.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


@dataclass
class SequenceScores:
    """Per-sequence results of one pass. Shapes: (N,) each; token_rewards is a list of (T_i,)."""

    rewards: np.ndarray
    logps: np.ndarray
    token_counts: np.ndarray
    token_rewards: list[np.ndarray] | None = None


class SequenceScorer:
    """Scores response tokens of prompt + response sequences with one model and one Q_diff."""

    def __init__(self, model, q_diff: np.ndarray, form: str = "logprob", pad_id: int = 0) -> None:
        if form not in TOKEN_REWARDS:
            raise ValueError(f"unknown reward form {form!r}; allowed: {', '.join(TOKEN_REWARDS)}")
        self.model = model
        self.form = form
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.lm_head = model.get_output_embeddings()
        self.q_diff = torch.as_tensor(q_diff, dtype=torch.float32, device=self.device)
        if self.q_diff.shape[0] != self.lm_head.weight.shape[0]:
            raise ValueError(
                f"Q_diff has {self.q_diff.shape[0]} entries but the model has "
                f"{self.lm_head.weight.shape[0]} logits"
            )
        self.uses_hidden_shortcut = isinstance(self.lm_head, torch.nn.Linear) and not any(
            getattr(model.config, name, None) not in (None, 1, 1.0) for name in LOGIT_TRANSFORMS
        )
        # W^T Q_diff and Q_diff . b, for the logprob form's shortcut.
        with torch.no_grad():
            self.projected_q = self.lm_head.weight.float().T @ self.q_diff
            bias = getattr(self.lm_head, "bias", None)
            self.bias_term = float(bias.float() @ self.q_diff) if bias is not None else 0.0

    def score(
        self, prompts: list[list[int]], responses: list[list[int]], keep_token_rewards: bool = False
    ) -> SequenceScores:
        """Score one batch of prompt + response sequences, one sequence per row."""
        groups = [(prompt, [response]) for prompt, response in zip(prompts, responses, strict=True)]
        return self.score_groups(groups, keep_token_rewards)

    @torch.inference_mode()
    def score_groups(
        self, groups: list[tuple[list[int], list[list[int]]]], keep_token_rewards: bool = False
    ) -> SequenceScores:
        """Score every response of every (prompt, responses) group, one row per group.

        The prompt of a group runs through the model once for all its responses (deft_core.packing).
        Results are listed sequence by sequence: the responses of group 0 in order, then group 1's.
        """
        packed = pack_groups(groups, self.pad_id).to(self.device)
        hidden, logits = self.forward(packed)
        if logits is None and self.form == "logprob":
            per_token = token_rewards_from_hidden(hidden, self.projected_q, self.bias_term)
        else:
            per_token = None
        need_rewards = per_token is None
        token_logps, token_rewards = self.project(hidden, logits, packed.targets, need_rewards)
        if per_token is None:
            per_token = token_rewards

        count = packed.sequences
        lengths = torch.tensor(packed.lengths, device=self.device, dtype=torch.float32)
        reward_sums = torch.zeros(count, device=self.device).index_add_(0, packed.sequence, per_token)
        logp_sums = torch.zeros(count, device=self.device).index_add_(0, packed.sequence, token_logps)
        scores = SequenceScores(
            rewards=(reward_sums / lengths.clamp(min=1)).cpu().numpy(),
            logps=logp_sums.cpu().numpy(),
            token_counts=lengths.cpu().numpy().astype(np.int64),
        )
        if keep_token_rewards:
            bounds = np.cumsum(packed.lengths)[:-1]
            scores.token_rewards = np.split(per_token.cpu().numpy(), bounds)
        return scores

    def forward(self, packed: PackedRows):
        """Run the model at the N positions that predict response tokens, in packed.targets order.

        Returns (hidden (N, H), None) with the hidden-state shortcut, else (None, logits (N, V)).

        No key/value cache is kept: it would hold every layer's keys and values.
        """
        positions = (packed.rows, packed.columns)
        if self.uses_hidden_shortcut:
            hidden = self.model.get_decoder()(**packed.model_inputs(self.model)).last_hidden_state
            return hidden[positions], None
        logits = self.model(**packed.model_inputs(self.model)).logits
        return None, logits[positions]

    def project(self, hidden, logits, targets, need_rewards: bool):
        """Return per-token log p(target) and, if asked, per-token rewards, in vocabulary chunks."""
        total = targets.shape[0]
        logps = torch.empty(total, device=self.device)
        rewards = torch.empty(total, device=self.device) if need_rewards else None
        for start in range(0, total, VOCAB_CHUNK):
            stop = min(start + VOCAB_CHUNK, total)
            chunk = logits[start:stop] if logits is not None else self.lm_head(hidden[start:stop])
            log_probs = torch.log_softmax(chunk.float(), dim=-1)
            logps[start:stop] = log_probs.gather(-1, targets[start:stop, None]).squeeze(-1)
            if need_rewards:
                rewards[start:stop] = TOKEN_REWARDS[self.form](chunk, self.q_diff)
        return logps, rewards
