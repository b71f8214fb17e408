"""Training losses against their plain formulas, and DPO against TRL's DPOTrainer."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from deft_core.training.losses import (
    BASE_LOSSES,
    LossParams,
    PairBatchOutputs,
    deft_loss,
    preference_metrics,
)

# Two pairs with hand-picked values: summed log-probs, token counts and distribution rewards.
PAIRS = [
    dict(lw=-12.0, ll=-15.0, rw=-11.0, rl=-16.5, tw=6, tl=5, sw=0.30, sl=0.10),
    dict(lw=-40.0, ll=-18.0, rw=-41.0, rl=-17.0, tw=20, tl=9, sw=-0.05, sl=0.20),
]
BETA, LAMBDA = 0.1, 0.7


def outputs() -> PairBatchOutputs:
    def column(key: str) -> torch.Tensor:
        return torch.tensor([p[key] for p in PAIRS], dtype=torch.float64)

    return PairBatchOutputs(
        chosen_logps=column("lw"),
        rejected_logps=column("ll"),
        chosen_tokens=column("tw"),
        rejected_tokens=column("tl"),
        chosen_reward=column("sw"),
        rejected_reward=column("sl"),
        ref_chosen_logps=column("rw"),
        ref_rejected_logps=column("rl"),
    )


def plain_base(method: str, p: dict) -> float:
    """The base losses written out for one pair with the math module only."""
    nll = -p["lw"] / p["tw"]
    if method == "sft":
        return nll
    if method == "dpo":
        z = BETA * ((p["lw"] - p["rw"]) - (p["ll"] - p["rl"]))
        return -math.log(1 / (1 + math.exp(-z)))
    mean_w, mean_l = p["lw"] / p["tw"], p["ll"] / p["tl"]
    rank = -math.log(math.exp(mean_w) / (math.exp(mean_w) + math.exp(mean_l)))
    return rank + LAMBDA * nll


@pytest.mark.parametrize("omega", [0.0, 2.5])
@pytest.mark.parametrize("pair_score", ["margin", "chosen"])
@pytest.mark.parametrize("method", sorted(BASE_LOSSES))
def test_loss_matches_formula(method, pair_score, omega):
    params = LossParams(beta=BETA, lambda_sft=LAMBDA, omega=omega, pair_score=pair_score)
    parts = deft_loss(method, outputs(), params)
    base = sum(plain_base(method, p) for p in PAIRS) / len(PAIRS)
    score = [p["sw"] - p["sl"] if pair_score == "margin" else p["sw"] for p in PAIRS]
    guidance = -omega * sum(score) / len(PAIRS)
    assert parts.base.item() == pytest.approx(base, rel=1e-12)
    assert parts.guidance.item() == pytest.approx(guidance, rel=1e-12, abs=1e-15)
    assert parts.total.item() == pytest.approx(base + guidance, rel=1e-12)


def test_omega_zero_is_plain_method():
    for method in BASE_LOSSES:
        plain = BASE_LOSSES[method](outputs(), LossParams(beta=BETA, lambda_sft=LAMBDA)).mean()
        guided = deft_loss(method, outputs(), LossParams(beta=BETA, lambda_sft=LAMBDA, omega=0.0))
        assert guided.total.item() == plain.item()


def test_guidance_gradient_raises_score():
    rewards = torch.tensor([0.1, 0.2], requires_grad=True)
    batch = outputs()
    batch.chosen_reward = rewards
    deft_loss("dpo", batch, LossParams(omega=1.0)).total.backward()
    # Minimising -omega * s pushes the chosen reward up: its gradient is -omega / B.
    assert rewards.grad.tolist() == pytest.approx([-0.5, -0.5])


def test_unknown_method_rejected():
    with pytest.raises(ValueError, match="unknown method 'ipo'"):
        deft_loss("ipo", outputs(), LossParams())


def test_pro_loss_finite_for_large_gap():
    batch = outputs()
    batch.rejected_logps = torch.tensor([1e4, 1e4], dtype=torch.float64)
    loss = deft_loss("pro", batch, LossParams()).total
    assert torch.isfinite(loss)


class FakeAccelerator:
    device = torch.device("cpu")

    def gather_for_metrics(self, value):
        return value

    def gather(self, value):
        return value


def trl_dpo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float):
    """Run TRL 1.16's DPOTrainer._compute_loss on precomputed per-token log-probs.

    A stand-in model returns per-token log-probs whose sums are the given sequence log-probs;
    the reference log-probs go in as precomputed values, as TRL's precompute_ref_logps does.
    """
    from trl.trainer.dpo_trainer import DPOTrainer

    pairs = policy_logps.shape[0] // 2
    width = 4
    per_token = torch.zeros(2 * pairs, width - 1, dtype=torch.float64)
    per_token[:, 0] = policy_logps  # one completion token carries the whole sum
    completion_mask = torch.zeros(2 * pairs, width, dtype=torch.long)
    completion_mask[:, 1] = 1

    def model(**kwargs):
        zeros = torch.zeros_like(per_token)
        return SimpleNamespace(
            log_probs=per_token,
            entropy=zeros,
            mean_logits=zeros,
            is_top1=torch.zeros_like(per_token, dtype=torch.bool),
        )

    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=FakeAccelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=["sigmoid"],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros(2 * pairs, width, dtype=torch.long),
        "attention_mask": torch.ones(2 * pairs, width, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_logps[:pairs],
        "ref_rejected_logps": ref_logps[pairs:],
    }
    loss = DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    return loss, trainer._metrics["train"]


def test_dpo_matches_trl():
    pytest.importorskip("trl")
    batch = outputs()
    policy = torch.cat([batch.chosen_logps, batch.rejected_logps])
    reference = torch.cat([batch.ref_chosen_logps, batch.ref_rejected_logps])
    trl_loss, trl_metrics = trl_dpo_loss(policy, reference, BETA)
    ours = deft_loss("dpo", batch, LossParams(beta=BETA))
    assert ours.total.item() == pytest.approx(float(trl_loss), rel=1e-9)
    metrics = preference_metrics(batch, BETA)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert metrics[name] == pytest.approx(trl_metrics[name][0], rel=1e-9), name
