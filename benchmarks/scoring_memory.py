"""Measure the peak memory of scoring a file, per stage, on the file's longest pairs.

Usage: python benchmarks/scoring_memory.py [DATA] [--longest 48] [--batch-size 16]

The whole file is loaded, tokenised and counted for Q_diff, as `deft score` does. Then only the
--longest pairs (by their longer sequence) are scored. The scorer sorts sequences by length and
starts with the longest, so its peak is reached on these batches, and the later batches of a
whole-file run are shorter and need less. A thread samples the resident set every 20 ms and
keeps each stage's peak; ru_maxrss gives the process's overall peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time

import psutil

from deft_core.encoding import EncodedPair, PairEncoder
from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.progress import ProgressTracker
from deft_core.scorer import SequenceScorer
from deft_core.scoring import build_distributions, encode_data, run_scorer

DEFAULT_DATA = "../shared/data/hh-rlhf/harmless-base-test.jsonl.gz"


class StagePeaks:
    """Sample the resident set in a thread and keep the peak of each named stage, in MiB."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.stage = "start"
        self.peaks: dict[str, float] = {}
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self) -> None:
        while True:
            rss = self.process.memory_info().rss / 2**20
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)
            time.sleep(0.02)


def longest_sequence(pair: EncodedPair) -> int:
    """Return the tokens of the pair's longer sequence, prompt included."""
    return len(pair.prompt_ids) + max(len(pair.chosen_ids), len(pair.rejected_ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--longest", type=int, default=48, help="score only this many of the longest pairs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()

    peaks = StagePeaks()
    peaks.stage = "load data"
    data = load_pairs(DataOptions(args.data))
    peaks.stage = "load model"
    loaded = load_model("bundled", "cpu", "auto")
    peaks.stage = "tokenise and count"
    encoded = encode_data(data, PairEncoder(loaded.tokenizer, "chat", args.max_length))
    distributions = build_distributions(encoded, loaded, 0.0)
    chosen = sorted(encoded, key=longest_sequence, reverse=True)[: args.longest]
    peaks.stage = "score longest pairs"
    scorer = SequenceScorer(loaded.model, distributions.q_diff, "logprob", loaded.tokenizer.pad_token_id or 0)
    started = time.perf_counter()
    run_scorer(scorer, chosen, args.batch_size, ProgressTracker("scoring", total=len(chosen)))
    seconds = time.perf_counter() - started
    time.sleep(0.1)

    report = {
        "data": args.data,
        "pairs_in_file": len(encoded),
        "pairs_scored": len(chosen),
        "longest_sequence": max(longest_sequence(e) for e in chosen),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "score_seconds": round(seconds, 1),
        "stage_peak_rss_mib": {stage: round(value) for stage, value in peaks.peaks.items()},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
