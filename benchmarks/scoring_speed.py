"""Compare deft's scorer with plain transformers loops on the same pairs, model and machine.

Usage: python benchmarks/scoring_speed.py [DATA] [--pairs 256] [--batch-size 16]

Measured in one process, one after another:
- plain loop: one response at a time in float32, full logits and log-softmax over every position;
- batched loop: responses sorted by length in batches, float32, full logits at every position;
- deft: deft_core.scoring.run_scorer in the auto dtype (bf16 where the CPU supports it);
- the matrix-product peak of this machine in float32 and in the auto dtype.
The "limit" is the time the model's linear layers would need at the peak of the same dtype
(2 * non-embedding parameters FLOPs per token), so deft's share of it shows how far from the
hardware bound it runs. Attention and the per-token rewards are left out of the limit.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from deft_core.encoding import PairEncoder
from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.progress import ProgressTracker
from deft_core.scorer import SequenceScorer
from deft_core.scoring import build_distributions, run_scorer


def matrix_peak(dtype: torch.dtype, repeats: int = 20) -> float:
    """Return the FLOP/s of a (2048, 576) x (576, 1536) product, the shape of the model's MLP."""
    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 2048 * 576 * 1536 * repeats / (time.perf_counter() - started)


def plain_loop(model, sequences: list[tuple[list[int], list[int]]], q_diff: torch.Tensor) -> None:
    """Score one sequence at a time with the model's full logits, the way a first script would."""
    with torch.inference_mode():
        for prompt, response in sequences:
            ids = torch.tensor([prompt + response])
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            positions = slice(len(prompt) - 1, len(prompt) + len(response) - 1)
            (log_probs[positions] @ q_diff).mean()
            log_probs[positions].gather(-1, torch.tensor(response)[:, None]).sum()


def batched_loop(model, sequences, q_diff: torch.Tensor, batch_size: int, pad_id: int) -> None:
    """Score length-sorted batches with full logits and a log-softmax over every position."""
    ordered = sorted(sequences, key=lambda s: len(s[0]) + len(s[1]), reverse=True)
    with torch.inference_mode():
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            width = max(len(p) + len(r) for p, r in batch)
            ids = torch.full((len(batch), width), pad_id)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (prompt, response) in enumerate(batch):
                ids[row, : len(prompt) + len(response)] = torch.tensor(prompt + response)
                mask[row, : len(prompt) + len(response)] = 1
            log_probs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            (log_probs @ q_diff).sum()


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/hh-rlhf/harmless-base-test.jsonl.gz")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    data = load_pairs(DataOptions(args.data, limit=args.pairs))
    fast = load_model("bundled")
    plain = load_model("bundled", dtype="float32")
    encoded = PairEncoder(fast.tokenizer, "auto", 1024).encode_many(data.pairs)
    sequences = [(e.prompt_ids, r) for e in encoded for r in (e.chosen_ids, e.rejected_ids)]
    tokens = sum(len(p) + len(r) for p, r in sequences)
    q_diff = build_distributions(encoded, fast, 0.0).q_diff
    pad_id = fast.tokenizer.pad_token_id or 0

    results = {}
    q32 = torch.tensor(q_diff, dtype=torch.float32)
    results["plain loop (fp32)"] = timed(plain_loop, plain.model, sequences, q32)
    results["batched loop (fp32)"] = timed(batched_loop, plain.model, sequences, q32, args.batch_size, pad_id)
    scorer = SequenceScorer(fast.model, q_diff, "logprob", pad_id)
    tracker = ProgressTracker("scoring", total=len(encoded))
    results[f"deft ({str(fast.dtype).removeprefix('torch.')})"] = timed(
        run_scorer, scorer, encoded, args.batch_size, tracker
    )

    parameters = sum(p.numel() for p in fast.model.parameters())
    embedding = fast.model.get_input_embeddings().weight.numel()
    flops_per_token = 2 * (parameters - embedding)
    peak = matrix_peak(fast.dtype)
    limit_seconds = tokens * flops_per_token / peak
    baseline = results["plain loop (fp32)"]
    report = {
        "pairs": len(encoded),
        "tokens": tokens,
        "matrix_peak_gflops": {
            "float32": round(matrix_peak(torch.float32) / 1e9),
            "deft dtype": round(peak / 1e9),
        },
        "limit_seconds_at_peak": round(limit_seconds, 1),
        "runs": {
            name: {
                "seconds": round(seconds, 1),
                "pairs_per_s": round(len(encoded) / seconds, 2),
                "tokens_per_s": round(tokens / seconds),
                "speedup_vs_plain": round(baseline / seconds, 2),
                "share_of_limit": round(limit_seconds / seconds, 3),
            }
            for name, seconds in results.items()
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    assert np.isfinite(list(results.values())).all()


if __name__ == "__main__":
    main()
