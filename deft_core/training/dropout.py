"""Dropout whose masks are cheap to draw on a CPU, for the LoRA adapters' inputs.

torch.nn.Dropout draws one random number per element, which on a CPU costs several nanoseconds
each: with LoRA on every linear layer of a 30-layer model it took a fifth of a training step's CPU
time in one profile (docs/benchmarks.md).

This module draws 64 random bits per call of the generator and cuts them into four 16-bit lanes,
one per element, and drops an element when its lane falls below p * 2^16. The drop probability is
therefore p rounded to a multiple of 1/65536 (0.05 becomes 0.0500031), and kept elements are
scaled by 1 / (1 - p) as in torch.nn.Dropout. Masks come from torch's default generator, so
seeding torch seeds them.
"""

from __future__ import annotations

import torch

LANE_VALUES = 2**16


class LaneDropout(torch.nn.Module):
    """Inverted dropout with probability p, masks drawn as 16-bit lanes of 64-bit random integers."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        # Lanes are signed 16-bit integers, uniform over [-2^15, 2^15).
        self.threshold = round(p * LANE_VALUES) - LANE_VALUES // 2
        self.scale = 1.0 / (1.0 - round(p * LANE_VALUES) / LANE_VALUES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        words = torch.empty(-(-x.numel() // 4), dtype=torch.int64, device=x.device)
        lanes = words.random_(-(2**63), 2**63 - 1).view(torch.int16)[: x.numel()].view(x.shape)
        return x.masked_fill(lanes < self.threshold, 0).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_lane_dropout(model: torch.nn.Module) -> int:
    """Replace every torch.nn.Dropout inside the model's LoRA layers by LaneDropout; return how many."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, torch.nn.Dropout):
                dropouts[name] = LaneDropout(dropout.p)
                replaced += 1
    return replaced
