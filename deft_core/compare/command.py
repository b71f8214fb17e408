"""`deft compare`: generate with the base model and finished runs on the same prompts, and compare them.

The comparison is saved in the first run's folder (compare/<timestamp>/results.json); --report also
writes it as Markdown or HTML. User mistakes raise DeftError, which the CLI prints as one line with
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from deft_core.errors import DeftError
from deft_core.progress import ProgressBar


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="finished training runs: run ids under $DEFT_HOME/runs or run folders. The first run "
        "supplies the held-out split, Q_diff and the base model",
    )
    parser.add_argument("--no-base", action="store_true", help="leave out the base model without adapter")
    parser.add_argument(
        "--limit", type=int, metavar="N", help="evaluate at most N prompts (default: every one)"
    )

    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument(
        "--prompts",
        metavar="FILE",
        help="typed prompts instead of the held-out split: one per line, or a .jsonl file of JSON "
        'strings or {"prompt": ...} objects',
    )
    prompts.add_argument(
        "--prompt", action="append", metavar="TEXT", help="a typed prompt (a user turn); repeat for more"
    )

    generation = parser.add_argument_group("generation")
    generation.add_argument(
        "--max-new-tokens",
        type=int,
        default=128,
        metavar="N",
        help="tokens generated at most per output (default: 128)",
    )
    generation.add_argument("--sample", action="store_true", help="sample instead of decoding greedily")
    generation.add_argument(
        "--seed", type=int, metavar="S", help="with --sample: seed of the sampling (default: 0)"
    )
    generation.add_argument(
        "--temperature", type=float, metavar="T", help="with --sample: divide the logits by T (default: 1.0)"
    )
    generation.add_argument(
        "--top-p", type=float, metavar="P", help="with --sample: nucleus probability mass (default: 1.0)"
    )
    generation.add_argument(
        "--batch-size",
        type=int,
        default=8,
        metavar="N",
        help="prompts per generation batch and scoring pass (default: 8)",
    )
    generation.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    generation.add_argument(
        "--dtype",
        default="auto",
        help="auto (bf16 where supported, else float32), float32, bfloat16 or float16",
    )

    output = parser.add_argument_group("scoring and output")
    output.add_argument(
        "--reward-model",
        metavar="ID",
        help="also score outputs with this sequence-classification reward model (Hub id or folder)",
    )
    output.add_argument("--report", metavar="FILE", help="also write a report: FILE.md or FILE.html")
    output.add_argument("--json", action="store_true", help="print the whole comparison as JSON")


def generation_settings(args: argparse.Namespace):
    from deft_core.compare.evaluate import GenerationSettings

    sampling_flags = {"--seed": args.seed, "--temperature": args.temperature, "--top-p": args.top_p}
    sampling_only = [flag for flag, value in sampling_flags.items() if value is not None]
    if sampling_only and not args.sample:
        verb, pronoun = ("applies", "it") if len(sampling_only) == 1 else ("apply", "them")
        flags = ", ".join(sampling_only)
        raise DeftError(f"{flags} {verb} only to sampling; add --sample or leave {pronoun} out")
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=1.0 if args.temperature is None else args.temperature,
        top_p=1.0 if args.top_p is None else args.top_p,
        seed=0 if args.seed is None else args.seed,
        batch_size=args.batch_size,
    )


def run_compare(args: argparse.Namespace) -> int:
    from deft_core.compare.comparison import (
        CompareRequest,
        compare_models,
        read_prompts_file,
        save_comparison,
    )
    from deft_core.compare.report import check_report_path, metrics_table, write_report

    settings = generation_settings(args)
    if args.report:
        check_report_path(args.report)
    prompts = read_prompts_file(args.prompts) if args.prompts else args.prompt
    request = CompareRequest(
        runs=list(args.runs),
        include_base=not args.no_base,
        prompts=prompts,
        settings=settings,
        limit=args.limit,
        reward_model=args.reward_model,
        device=args.device,
        dtype=args.dtype,
    )
    bar = ProgressBar()
    try:
        comparison = compare_models(request, bar)
    finally:
        bar.close()
    path = save_comparison(comparison)
    for warning in comparison.warnings:
        print(f"deft: warning: {warning}", file=sys.stderr)
    print(f"saved the comparison to {path}", file=sys.stderr)
    if args.report:
        print(f"wrote the report {write_report(comparison, args.report)}", file=sys.stderr)
    if args.json:
        print(json.dumps({"results_path": str(path), **comparison.to_dict()}, indent=1, ensure_ascii=False))
    else:
        print(metrics_table(comparison).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if args.prompt:
            print_outputs(comparison)
    return 0


def print_outputs(comparison) -> None:
    """Print each typed prompt and every model's output for it, for reading in the terminal."""
    for index in range(len(comparison.evaluations[0].outputs)):
        print(f"\nprompt {index + 1}: {comparison.evaluations[0].outputs[index]['prompt']}")
        for evaluation in comparison.evaluations:
            text = " ".join(str(evaluation.outputs[index]["output"]).split())
            print(f"  {evaluation.label}: {text}")
