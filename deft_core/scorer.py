"""Teacher-forced passes of a causal LM over prompt + response sequences, batched by length.

For each sequence the scorer returns the distribution reward (see deft_core.rewards), the summed
log-probability of the response tokens, and optionally the per-token rewards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

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

    @torch.inference_mode()
    def score(
        self, prompts: list[list[int]], responses: list[list[int]], keep_token_rewards: bool = False
    ) -> SequenceScores:
        """Score one batch of sequences, padded on the right to the longest."""
        hidden, logits, input_ids, positions = self.forward(prompts, responses)
        targets = input_ids[positions[0], positions[1] + 1]
        row_of = positions[0]

        if logits is None and self.form == "logprob":
            per_token = token_rewards_from_hidden(hidden, self.projected_q, self.bias_term)
        else:
            per_token = None
        token_logps, token_rewards = self.project(hidden, logits, targets, need_rewards=per_token is None)
        if per_token is None:
            per_token = token_rewards

        count = len(prompts)
        lengths = torch.tensor([len(r) for r in responses], device=self.device, dtype=torch.float32)
        reward_sums = torch.zeros(count, device=self.device).index_add_(0, row_of, per_token)
        logp_sums = torch.zeros(count, device=self.device).index_add_(0, row_of, token_logps)
        scores = SequenceScores(
            rewards=(reward_sums / lengths.clamp(min=1)).cpu().numpy(),
            logps=logp_sums.cpu().numpy(),
            token_counts=lengths.cpu().numpy().astype(np.int64),
        )
        if keep_token_rewards:
            split = per_token.cpu().numpy()
            bounds = np.cumsum([len(r) for r in responses])[:-1]
            scores.token_rewards = np.split(split, bounds)
        return scores

    def forward(self, prompts, responses):
        """Run the model; return hidden states (or logits) at the positions predicting responses.

        Returns (hidden (N, H) or None, logits (N, V) or None, input_ids (B, L), positions), where
        positions = (row, column) index tensors of the N predicting positions in sequence order.
        """
        sequences = [p + r for p, r in zip(prompts, responses, strict=True)]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        predicting = torch.zeros((len(sequences), width), dtype=torch.bool)
        for row, (prompt, sequence) in enumerate(zip(prompts, sequences, strict=True)):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            # logits at position j predict token j + 1: positions P-1 .. P+T-2 predict the response.
            predicting[row, len(prompt) - 1 : len(sequence) - 1] = True
        input_ids = input_ids.to(self.device)
        positions = predicting.nonzero(as_tuple=True)
        positions = (positions[0].to(self.device), positions[1].to(self.device))

        # Padding sits on the right, after every real token, so the causal mask alone keeps real
        # tokens from seeing it: no attention mask is passed, which lets attention take its
        # causal kernel. No key/value cache either: it would hold every layer's keys and values.
        if self.uses_hidden_shortcut:
            decoder = self.model.get_decoder()
            hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state
            return hidden[positions], None, input_ids, positions
        logits = self.model(input_ids=input_ids, use_cache=False).logits
        return None, logits[positions], input_ids, positions

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
