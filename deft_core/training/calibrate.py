"""Measure the base-loss and guidance gradient norms at step 0, to choose a default omega.

Run: python -m deft_core.training.calibrate DATA [PAIRS] [MAX_LENGTH]
It prints, per method, ||grad L_base|| and ||grad s_theta|| over the LoRA weights of a fresh
adapter, and the omega that makes ||omega * grad s_theta|| a tenth of ||grad L_base||.
"""

from __future__ import annotations

import json
import sys

import torch

from deft_core.distributions import TokenDistributions
from deft_core.encoding import PairEncoder
from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.training.config import METHODS, TrainConfig
from deft_core.training.data import collate
from deft_core.training.losses import BASE_LOSSES, LossParams, pair_score
from deft_core.training.policy import PolicyForward, add_lora, reference_logps

# Target ratio ||omega * grad s_theta|| / ||grad L_base|| at the start of training.
GUIDANCE_SHARE = 0.1


def gradient_norm(parameters: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in parameters if p.grad is not None)))


def measure(data: str, pairs: int = 8, max_length: int = 256) -> dict[str, dict[str, float]]:
    """Return the step-0 gradient norms and the resulting omega for every method."""
    loaded = load_model("bundled")
    everything = load_pairs(DataOptions(data)).pairs
    encoder = PairEncoder(loaded.tokenizer, "auto", max_length)
    all_encoded = encoder.encode_many(everything)
    vocab = loaded.model.get_output_embeddings().weight.shape[0]
    distributions = TokenDistributions.from_sequences(
        (e.chosen_ids for e in all_encoded), (e.rejected_ids for e in all_encoded), loaded.tokenizer, vocab
    )
    step = max(1, len(all_encoded) // pairs)
    encoded = all_encoded[::step][:pairs]
    model = add_lora(loaded, TrainConfig(lora_dropout=0.0))
    pad_id = loaded.tokenizer.pad_token_id or 0
    forward = PolicyForward(model, distributions.q_diff, "logprob", pad_id)
    reference = reference_logps(forward, encoded, 2)
    # B of a fresh LoRA adapter is zero, so only B gets gradients at step 0; measure those.
    trainable = [p for p in model.parameters() if p.requires_grad]
    batch = collate(encoded, list(range(len(encoded))), pad_id)
    results = {}
    model.train()
    for method in METHODS:
        outputs = forward.pair_outputs(batch, reference)
        params = LossParams()
        BASE_LOSSES[method](outputs, params).mean().backward(retain_graph=True)
        base = gradient_norm(trainable)
        model.zero_grad(set_to_none=True)
        pair_score(outputs, params).mean().backward()
        guidance = gradient_norm(trainable)
        model.zero_grad(set_to_none=True)
        results[method] = {
            "base_grad_norm": base,
            "guidance_grad_norm": guidance,
            "omega": GUIDANCE_SHARE * base / guidance if guidance > 0 else 0.0,
        }
    return results


if __name__ == "__main__":
    arguments = sys.argv[1:]
    report = measure(arguments[0], *[int(a) for a in arguments[1:]])
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
