"""Compare deft's scorer with plain transformers loops and TRL on the same pairs, model and machine.

Usage: python benchmarks/scoring_speed.py [DATA] [--pairs 256] [--batch-size 16] [--methods a,b,...]

Every method runs in its own subprocess, one after another, on the first --pairs pairs of DATA
with the bundled model (max_length 1024, chat template):
- plain: one response at a time in float32, full logits and a log-softmax over every position;
- batched: responses sorted by length in batches of --batch-size, float32, full logits and
  log-softmax at every position;
- trl: TRL's reference log-prob pass (DPOTrainer.compute_ref_log_probs, the pass it runs before
  or during DPO training) over its own collated batches of --batch-size / 2 pairs, in the auto dtype;
- deft: deft_core.scoring.run_scorer in the auto dtype (bf16 where the CPU computes it natively),
  each pair packed into one row so that its prompt runs once for both responses;
- deft-fp32: the same in float32, to check that bf16 ranks the pairs like fp32.
The matrix-product peaks in float32 and in the auto dtype are measured in this process.

The "limit" is the time the model's linear layers need for the pairs at the matrix-product peak of
the method's dtype, at 2 * non-embedding parameters FLOPs per token. It counts the fewest tokens
that score every pair: each prompt once and both responses. A method's "share of limit" is the
limit over its measured time. Methods that run each prompt twice (every method but deft's) run
more tokens than the limit counts. The "matrix use" column is the same share counted on the
tokens a method really runs. Attention, the vocabulary projection and the per-token rewards are
left out of the limit, so 1.0 is out of reach. Memory is the peak resident set of the method's
process (model load included) and the growth of the resident set during the method itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import torch

METHODS = ("plain", "batched", "trl", "deft", "deft-fp32")
DEFAULT_DATA = "../shared/data/hh-rlhf/harmless-base-test.jsonl.gz"
MAX_LENGTH = 1024


def matrix_peak(dtype: torch.dtype, repeats: int = 20) -> float:
    """Return the FLOP/s of a (2048, 576) x (576, 1536) product, the shape of the model's MLP."""
    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 2048 * 576 * 1536 * repeats / (time.perf_counter() - started)


class MemoryWatch:
    """Sample this process's resident set every 10 ms in a thread, and report the peak above a baseline."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.baseline = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return (self.peak - self.baseline) / 2**20


def plain_loop(model, sequences: list[tuple[list[int], list[int]]], q_diff: torch.Tensor) -> list[float]:
    """Score one sequence at a time with the model's full logits, the way a first script would."""
    rewards = []
    with torch.inference_mode():
        for prompt, response in sequences:
            ids = torch.tensor([prompt + response])
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            positions = slice(len(prompt) - 1, len(prompt) + len(response) - 1)
            rewards.append((log_probs[positions] @ q_diff).mean().item())
            log_probs[positions].gather(-1, torch.tensor(response)[:, None]).sum()
    return rewards


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


def trl_reference_pass(loaded, pairs, batch_size: int) -> tuple[float, int]:
    """Run TRL's reference log-prob computation over all pairs; return (seconds, tokens)."""
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from trl import DPOConfig, DPOTrainer

    rows = [
        {
            "prompt": pair.prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        for pair in pairs
    ]
    with tempfile.TemporaryDirectory() as output:
        config = DPOConfig(
            output_dir=output,
            max_length=MAX_LENGTH,
            per_device_train_batch_size=batch_size,
            bf16=loaded.dtype == torch.bfloat16,
            use_cpu=True,
            report_to="none",
            dataloader_num_workers=0,
        )
        trainer = DPOTrainer(
            model=loaded.model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
        )
        loader = DataLoader(trainer.train_dataset, batch_size=batch_size, collate_fn=trainer.data_collator)
        model = trainer.ref_model or trainer.model
        tokens = 0
        started = time.perf_counter()
        for batch in loader:
            trainer.compute_ref_log_probs(model, batch)
            tokens += int(batch["attention_mask"].sum())
        return time.perf_counter() - started, tokens


def run_method(args: argparse.Namespace) -> dict:
    """Load data and model for one method, time the method alone, and report what it measured."""
    from deft_core.encoding import PairEncoder
    from deft_core.loading import DataOptions, load_pairs
    from deft_core.models import load_model
    from deft_core.progress import ProgressTracker
    from deft_core.scorer import SequenceScorer
    from deft_core.scoring import build_distributions, run_scorer, sequence_tokens

    method = args.only
    dtype = "float32" if method in ("plain", "batched", "deft-fp32") else "auto"
    data = load_pairs(DataOptions(args.data, limit=args.pairs))
    loaded = load_model("bundled", "cpu", dtype)
    encoded = PairEncoder(loaded.tokenizer, "chat", MAX_LENGTH).encode_many(data.pairs)
    sequences = [(e.prompt_ids, r) for e in encoded for r in (e.chosen_ids, e.rejected_ids)]
    tokens = sum(len(p) + len(r) for p, r in sequences)
    pair_tokens = sequence_tokens(encoded)
    # Q_diff with alpha 0, as the plain loops would compute it; only speed is compared.
    q_diff = build_distributions(encoded, loaded, 0.0).q_diff
    pad_id = loaded.tokenizer.pad_token_id or 0
    q32 = torch.tensor(q_diff, dtype=torch.float32)

    watch = MemoryWatch()
    started = time.perf_counter()
    scores = None
    if method == "plain":
        plain_loop(loaded.model, sequences, q32)
    elif method == "batched":
        batched_loop(loaded.model, sequences, q32, args.batch_size, pad_id)
    elif method == "trl":
        seconds, tokens = trl_reference_pass(loaded, data.pairs, max(1, args.batch_size // 2))
        started = time.perf_counter() - seconds
    else:
        scorer = SequenceScorer(loaded.model, q_diff, "logprob", pad_id)
        tracker = ProgressTracker("scoring", total=len(encoded))
        rewards, _, _ = run_scorer(scorer, encoded, args.batch_size, tracker)
        scores = (rewards[:, 0] - rewards[:, 1]).tolist()
        tokens = pair_tokens
    seconds = time.perf_counter() - started
    growth = watch.stop()
    return {
        "method": method,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "pairs": len(encoded),
        "tokens": tokens,
        "pair_tokens": pair_tokens,
        "seconds": seconds,
        "rss_growth_mib": growth,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "non_embedding_parameters": sum(p.numel() for p in loaded.model.parameters())
        - loaded.model.get_input_embeddings().weight.numel(),
        "pair_scores": scores,
    }


def spearman(a: list[float], b: list[float]) -> float:
    """Return the Spearman rank correlation of two score lists (continuous scores have no ties)."""
    ranks_a = np.argsort(np.argsort(a)).astype(float)
    ranks_b = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def launch(args: argparse.Namespace, method: str) -> dict | None:
    command = [sys.executable, __file__, args.data, "--only", method, "--pairs", str(args.pairs)]
    command += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"{method} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS)
    )
    parser.add_argument("--only", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print("RESULT " + json.dumps(run_method(args)))
        return

    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; allowed: {', '.join(METHODS)}")
    peaks = {"float32": matrix_peak(torch.float32)}
    results = {}
    for method in methods:
        result = launch(args, method)
        if result is None:
            continue
        if result["dtype"] not in peaks:
            peaks[result["dtype"]] = matrix_peak(getattr(torch, result["dtype"]))
        results[method] = result
        print(json.dumps({k: v for k, v in result.items() if k != "pair_scores"}), flush=True)

    baseline = results.get("plain")
    rows = []
    for method, result in results.items():
        flops_per_token = 2 * result["non_embedding_parameters"]
        limit = result["pair_tokens"] * flops_per_token / peaks[result["dtype"]]
        matrix_time = result["tokens"] * flops_per_token / peaks[result["dtype"]]
        pairs_per_s = result["pairs"] / result["seconds"]
        rows.append(
            {
                "method": method,
                "dtype": result["dtype"],
                "seconds": round(result["seconds"], 1),
                "pairs_per_s": round(pairs_per_s, 2),
                "tokens": result["tokens"],
                "tokens_per_s": round(result["tokens"] / result["seconds"]),
                "vs_plain": round(pairs_per_s / (baseline["pairs"] / baseline["seconds"]), 2)
                if baseline
                else None,
                "share_of_limit": round(limit / result["seconds"], 3),
                "matrix_use": round(matrix_time / result["seconds"], 3),
                "peak_rss_mib": round(result["peak_rss_mib"]),
                "rss_growth_mib": round(result["rss_growth_mib"]),
            }
        )
    report = {
        "data": args.data,
        "pairs": args.pairs,
        "pair_tokens": next(iter(results.values()))["pair_tokens"] if results else None,
        "batch_size": args.batch_size,
        "matrix_peak_gflops": {dtype: round(value / 1e9) for dtype, value in peaks.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "results": rows,
    }
    if "deft" in results and "deft-fp32" in results:
        report["spearman_deft_vs_fp32"] = round(
            spearman(results["deft"]["pair_scores"], results["deft-fp32"]["pair_scores"]), 5
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
