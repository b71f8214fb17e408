"""Time deft's DEFT-DPO optimizer step against TRL's DPOTrainer on the same pairs and settings.

Usage: python benchmarks/training_speed.py [DATA] [--pairs 64] [--steps 16] [--batch-size 4]
       [--max-length 512] [--dtype bfloat16] [--only deft|trl|trl-precomputed|trl-no-checkpointing]

Each method runs in its own subprocess, one after another, on the first --pairs pairs of DATA with
the bundled model, LoRA r=8 (alpha 16, dropout 0.05) on every linear layer, --batch-size pairs per
optimizer step (no accumulation) and --max-length tokens per sequence:
- deft: deft_core.training (DEFT-DPO: DPO plus the guidance term), reference log-probs computed
  once before the first step, as `deft train` does when no score file has them; each pair is
  packed into one row (its prompt runs once for both responses), and on a CPU the LoRA dropout
  masks are drawn with deft_core.training.dropout.LaneDropout;
- trl: TRL's DPOTrainer with its defaults for the rest (gradient checkpointing on, the reference
  pass run inside every step with the adapter disabled);
- trl-precomputed: the same with precompute_ref_log_probs=True, so its steps hold no reference pass;
- trl-no-checkpointing: the same as trl with gradient_checkpointing=False.
The first step of each method is a warm-up and is not timed; the rest give seconds per step. With
the defaults the 16 timed steps cover one epoch of the 64 pairs (less the warm-up's batch plus one
batch of the next epoch), so both trainers see nearly the same pairs despite their different
orders. The time to get the reference log-probs before training is reported as setup, and
"setup + steps" adds it to the timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

METHODS = ("deft", "trl", "trl-precomputed", "trl-no-checkpointing")
DEFAULT_DATA = "../shared/data/hh-rlhf/harmless-base-test.jsonl.gz"


def deft_steps(args: argparse.Namespace) -> dict:
    """Run deft's training session step by step and time each optimizer step."""
    from deft_core.training.config import TrainConfig
    from deft_core.training.loop import build_session, optimizer_step
    from deft_core.training.runs import create_run

    config = TrainConfig(
        data=args.data,
        limit=args.pairs,
        eval_size=0,
        selection="full",
        model="bundled",
        template="chat",
        max_length=args.max_length,
        dtype=args.dtype,
        method="dpo",
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules=["all-linear"],
        batch_size=args.batch_size,
        grad_accum=1,
        max_steps=args.steps + 1,
        eval_steps=10_000,
        save_steps=10_000,
        name="speed",
    )
    with tempfile.TemporaryDirectory() as root:
        run = create_run(config, root=Path(root))
        started = time.perf_counter()
        session = build_session(config, run)
        setup = time.perf_counter() - started
        session.model.train()
        times, tokens = [], []
        for step in range(args.steps + 1):
            started = time.perf_counter()
            optimizer_step(session, step)
            times.append(time.perf_counter() - started)
            indices = session.train_pairs_at(step)
            tokens.append(
                sum(
                    2 * len(session.train.encoded[i].prompt_ids)
                    + len(session.train.encoded[i].chosen_ids)
                    + len(session.train.encoded[i].rejected_ids)
                    for i in indices
                )
            )
    return {"setup_seconds": setup, "step_seconds": times[1:], "step_tokens": tokens[1:]}


def trl_steps(args: argparse.Namespace, method: str) -> dict:
    """Train TRL's DPOTrainer for --steps + 1 steps and time each step with a callback."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from deft_core.loading import DataOptions, load_pairs
    from deft_core.models import load_model

    data = load_pairs(DataOptions(args.data, limit=args.pairs))
    rows = [
        {
            "prompt": pair.prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        for pair in data.pairs
    ]
    loaded = load_model("bundled", "cpu", args.dtype)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.started = 0.0

        def on_step_begin(self, *_args, **_kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, *_args, **_kwargs):
            self.times.append(time.perf_counter() - self.started)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output:
        config = DPOConfig(
            output_dir=output,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            max_length=args.max_length,
            max_steps=args.steps + 1,
            learning_rate=2e-4,
            beta=0.1,
            bf16=args.dtype == "bfloat16",
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            dataloader_num_workers=0,
            precompute_ref_log_probs=method == "trl-precomputed",
            gradient_checkpointing=method != "trl-no-checkpointing",
            seed=0,
        )
        started = time.perf_counter()
        trainer = DPOTrainer(
            model=loaded.model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
            peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"),
            callbacks=[timer],
        )
        setup = time.perf_counter() - started
        trainer.train()
        # Tokens per pair after the collator cuts each sequence to max_length.
        lengths = [
            sum(
                min(len(row["prompt_ids"]) + len(row[side]), args.max_length)
                for side in ("chosen_ids", "rejected_ids")
            )
            for row in trainer.train_dataset
            if "prompt_ids" in row
        ]
    mean_tokens = sum(lengths) / len(lengths) * args.batch_size if lengths else None
    return {"setup_seconds": setup, "step_seconds": timer.times[1:], "mean_step_tokens": mean_tokens}


def run_one(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    result = deft_steps(args) if args.only == "deft" else trl_steps(args, args.only)
    print("RESULT " + json.dumps(result))


def summarise(name: str, result: dict) -> dict:
    seconds = sum(result["step_seconds"]) / len(result["step_seconds"])
    tokens = (
        sum(result["step_tokens"]) / len(result["step_tokens"])
        if "step_tokens" in result
        else result.get("mean_step_tokens")
    )
    return {
        "method": name,
        "setup_s": round(result["setup_seconds"], 1),
        "setup_plus_steps_s": round(result["setup_seconds"] + sum(result["step_seconds"]), 1),
        "s_per_step": round(seconds, 2),
        "steps_per_s": round(1 / seconds, 4),
        "tokens_per_s": round(tokens / seconds) if tokens else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16, help="timed steps, after one warm-up step")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS)
    )
    parser.add_argument("--only", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        run_one(args)
        return

    rows = []
    for name in args.methods.split(","):
        if name not in METHODS:
            parser.error(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
        command = [sys.executable, __file__, args.data, "--only", name, "--pairs", str(args.pairs)]
        command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        command += ["--max-length", str(args.max_length), "--dtype", args.dtype]
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(f"{name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(summarise(name, json.loads(lines[-1][len("RESULT ") :])))
        print(json.dumps(rows[-1]), flush=True)

    deft = next((r for r in rows if r["method"] == "deft"), None)
    if deft:
        for row in rows:
            row["deft_speedup"] = round(row["s_per_step"] / deft["s_per_step"], 2)
            row["deft_speedup_with_setup"] = round(row["setup_plus_steps_s"] / deft["setup_plus_steps_s"], 2)
    report = {
        "data": args.data,
        "pairs": args.pairs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "dtype": args.dtype,
        "timed_steps": args.steps,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "results": rows,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
