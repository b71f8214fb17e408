"""The distribution reward and pair scores as pure functions of logits, hidden states or rewards.

For a response of T tokens with logits z_t (Shape: (V,)) predicting token t:

    logprob form:  r = (1/T) sum_t sum_v Q_diff(v) * log softmax(z_t)(v)
    prob form:     r = (1/T) sum_t sum_v Q_diff(v) * softmax(z_t)(v)

Because sum_v Q_diff(v) = 0, the log-sum-exp cancels in the logprob form, which becomes
(1/T) sum_t Q_diff . z_t. With a linear LM head z_t = W h_t + b this is
(W^T Q_diff) . h_t + Q_diff . b per token, so scoring needs no vocabulary projection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

RewardForm = Literal["logprob", "prob"]
PairScore = Literal["margin", "chosen"]


def token_rewards_logprob(logits: torch.Tensor, q_diff: torch.Tensor) -> torch.Tensor:
    """Return Q_diff . log softmax(z_t) per position. Shape: (..., V) -> (...)."""
    return F.log_softmax(logits.float(), dim=-1) @ q_diff.float()


def token_rewards_prob(logits: torch.Tensor, q_diff: torch.Tensor) -> torch.Tensor:
    """Return Q_diff . softmax(z_t) per position. Shape: (..., V) -> (...)."""
    return F.softmax(logits.float(), dim=-1) @ q_diff.float()


TOKEN_REWARDS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "logprob": token_rewards_logprob,
    "prob": token_rewards_prob,
}


def token_rewards_from_hidden(
    hidden: torch.Tensor, projected_q: torch.Tensor, bias_term: float = 0.0
) -> torch.Tensor:
    """Return the logprob form's per-position reward from final hidden states.

    `projected_q` is W^T Q_diff (Shape: (H,)) and `bias_term` is Q_diff . b for an LM head with
    bias. Shape: (..., H) -> (...). Equal to token_rewards_logprob(W h + b) up to rounding.
    """
    return hidden.float() @ projected_q.float() + bias_term


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average over the last dimension where mask is true. Shape: (B, T) -> (B,)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def distribution_reward(
    logits: torch.Tensor, mask: torch.Tensor, q_diff: torch.Tensor, form: RewardForm = "logprob"
) -> torch.Tensor:
    """Return r(x, y) for each sequence, from the logits predicting its response tokens.

    Shapes: logits (B, T, V), mask (B, T) true on response tokens, q_diff (V,) -> (B,).
    """
    return masked_mean(TOKEN_REWARDS[form](logits, q_diff), mask)


def pair_score_margin(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """s = r(x, y_w) - r(x, y_l)."""
    return reward_chosen - reward_rejected


def pair_score_chosen(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """s = r(x, y_w)."""
    del reward_rejected  # same signature as every pair score
    return reward_chosen


PAIR_SCORES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "margin": pair_score_margin,
    "chosen": pair_score_chosen,
}


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum log p(label_t) over masked positions. Shapes: (B, T, V), (B, T), (B, T) -> (B,)."""
    logps = torch.gather(F.log_softmax(logits.float(), dim=-1), -1, labels.unsqueeze(-1)).squeeze(-1)
    return (logps * mask.to(logps.dtype)).sum(-1)
