"""Training losses as pure functions of per-sequence log-probabilities and distribution rewards.

Every function works on one batch of pairs and returns a per-pair loss (Shape: (B,)); the
training loop averages it. Inputs, per pair i, over response tokens only:

    chosen_logps / rejected_logps    sum_t log pi_theta(y_t | x, y_<t)    (policy, differentiable)
    ref_chosen_logps / ...           the same sums under pi_ref            (constants)
    chosen_tokens / rejected_tokens  T, the number of response tokens
    chosen_reward / rejected_reward  r_theta(x, y), the distribution reward from the policy's logits

Base losses:
    SFT   NLL(y_w) = -chosen_logps / T_w
    DPO   -log sigmoid(beta * [(logp_w - ref_w) - (logp_l - ref_l)])
    PRO   -log(exp(p_w) / (exp(p_w) + exp(p_l))) + lambda_sft * NLL(y_w), p_k = logp_k / T_k
          (Song et al. 2023, "Preference Ranking Optimization", with two responses)

Guided (DEFT) loss: L = L_base - omega * s_theta, with s_theta = r_theta(y_w) - r_theta(y_l)
("margin") or r_theta(y_w) ("chosen"). omega = 0 gives the plain base loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deft_core.rewards import PAIR_SCORES


@dataclass
class PairBatchOutputs:
    """Per-pair sums over response tokens for one batch; every tensor has shape (B,)."""

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor
    ref_chosen_logps: torch.Tensor
    ref_rejected_logps: torch.Tensor


@dataclass(frozen=True)
class LossParams:
    """Hyperparameters of the losses; each base loss reads only its own."""

    beta: float = 0.1  # DPO: scale of the implicit reward beta * log(pi_theta / pi_ref)
    lambda_sft: float = 1.0  # PRO: weight of the NLL term on the chosen response
    omega: float = 0.0  # weight of the guidance term; 0 turns guidance off
    pair_score: str = "margin"  # s_theta = r(chosen) - r(rejected), or r(chosen)


def mean_nll(logps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Return the mean negative log-likelihood per response token. Shapes: (B,), (B,) -> (B,)."""
    return -logps / tokens.clamp(min=1)


def sft_loss(outputs: PairBatchOutputs, params: LossParams) -> torch.Tensor:
    """Return NLL(y_w): the chosen response's mean token negative log-likelihood. Shape: (B,)."""
    del params  # SFT has no hyperparameters; same signature as every base loss
    return mean_nll(outputs.chosen_logps, outputs.chosen_tokens)


def dpo_logratios(outputs: PairBatchOutputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Return log pi_theta/pi_ref of the chosen and of the rejected response. Shapes: (B,), (B,)."""
    return (
        outputs.chosen_logps - outputs.ref_chosen_logps,
        outputs.rejected_logps - outputs.ref_rejected_logps,
    )


def dpo_loss(outputs: PairBatchOutputs, params: LossParams) -> torch.Tensor:
    """Return -log sigmoid(beta * (chosen log-ratio - rejected log-ratio)). Shape: (B,)."""
    chosen, rejected = dpo_logratios(outputs)
    return -F.logsigmoid(params.beta * (chosen - rejected))


def pro_loss(outputs: PairBatchOutputs, params: LossParams) -> torch.Tensor:
    """Return the two-response PRO ranking loss plus lambda_sft * NLL(y_w). Shape: (B,)."""
    chosen_mean = outputs.chosen_logps / outputs.chosen_tokens.clamp(min=1)
    rejected_mean = outputs.rejected_logps / outputs.rejected_tokens.clamp(min=1)
    # -log(e^a / (e^a + e^b)) = softplus(b - a), which stays finite for large gaps.
    rank = F.softplus(rejected_mean - chosen_mean)
    return rank + params.lambda_sft * mean_nll(outputs.chosen_logps, outputs.chosen_tokens)


BASE_LOSSES: dict[str, Callable[[PairBatchOutputs, LossParams], torch.Tensor]] = {
    "sft": sft_loss,
    "dpo": dpo_loss,
    "pro": pro_loss,
}


def pair_score(outputs: PairBatchOutputs, params: LossParams) -> torch.Tensor:
    """Return s_theta for each pair from the policy's distribution rewards. Shape: (B,)."""
    return PAIR_SCORES[params.pair_score](outputs.chosen_reward, outputs.rejected_reward)


def guidance_term(outputs: PairBatchOutputs, params: LossParams) -> torch.Tensor:
    """Return -omega * s_theta, the term DEFT adds to the base loss. Shape: (B,)."""
    return -params.omega * pair_score(outputs, params)


@dataclass
class LossParts:
    """The batch loss to minimise and its two parts, each averaged over pairs (scalars)."""

    total: torch.Tensor
    base: torch.Tensor
    guidance: torch.Tensor


def deft_loss(method: str, outputs: PairBatchOutputs, params: LossParams) -> LossParts:
    """Return L_base - omega * s_theta averaged over the batch, for method "sft", "dpo" or "pro"."""
    if method not in BASE_LOSSES:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(BASE_LOSSES)}")
    base = BASE_LOSSES[method](outputs, params).mean()
    guidance = guidance_term(outputs, params).mean()
    return LossParts(total=base + guidance, base=base, guidance=guidance)


def preference_metrics(outputs: PairBatchOutputs, beta: float) -> dict[str, float]:
    """Return the DPO implicit-reward metrics and the policy's preference accuracy for one batch.

    rewards/* use beta * log(pi_theta / pi_ref), as TRL's DPOTrainer logs them, so they are 0
    for an untrained adapter. preference_accuracy is the share of pairs whose chosen response has
    the higher mean token log-probability under the policy, which is meaningful before training.
    """
    with torch.no_grad():
        chosen, rejected = dpo_logratios(outputs)
        chosen_rewards, rejected_rewards = beta * chosen, beta * rejected
        chosen_mean = outputs.chosen_logps / outputs.chosen_tokens.clamp(min=1)
        rejected_mean = outputs.rejected_logps / outputs.rejected_tokens.clamp(min=1)
        return {
            "rewards/chosen": chosen_rewards.mean().item(),
            "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            "preference_accuracy": (chosen_mean > rejected_mean).float().mean().item(),
            "pair_score": (outputs.chosen_reward - outputs.rejected_reward).mean().item(),
        }
