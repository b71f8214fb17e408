"""Score a whole dataset with `deft score` settings and report wall time, throughput and peak memory.

Usage: python benchmarks/score_file.py DATA [--model M] [--batch-size B] [--dtype T] [--limit N] [--out F]

The score cache is not read, so the model really runs. With --out the scores are also saved there
and stored in the cache.
Peak memory is the process's maximum resident set size (ru_maxrss), which includes the Python
interpreter and the loaded libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import torch

from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.scoring import ScoreOptions, score_data
from deft_core.store import save_scores, store_in_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--out", help="also save the scores here and in the score cache")
    args = parser.parse_args()

    started = time.perf_counter()
    data = load_pairs(DataOptions(args.data, limit=args.limit))
    loaded = load_model(args.model, dtype=args.dtype)
    load_seconds = time.perf_counter() - started
    options = ScoreOptions(batch_size=args.batch_size, max_length=args.max_length)
    result = score_data(data, loaded, options, use_cache=False)
    total_seconds = time.perf_counter() - started
    if args.out:
        save_scores(args.out, result.table, result.meta)
        store_in_cache(result.meta["cache_key"], result.table, result.meta)

    timing = result.meta["timing"]
    report = {
        "data": args.data,
        "pairs": len(result.table),
        "model": loaded.describe(),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "load_seconds": round(load_seconds, 1),
        "score_seconds": timing["seconds"],
        "wall_seconds": round(total_seconds, 1),
        "tokens": timing["tokens"],
        "tokens_per_s": timing["tokens_per_s"],
        "pairs_per_s": timing["pairs_per_s"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
