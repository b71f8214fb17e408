"""The `deft` command line: score, filter, audit and tokens.

User mistakes end with one line on stderr ("deft: error: ...") and exit status 2; nothing
prints a traceback unless --debug is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from deft_core.errors import DeftError
from deft_core.progress import ProgressBar
from deft_core.text import count_noun

logger = logging.getLogger("deft_core")


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line that points to --help, not the full usage.

    Subcommand parsers inherit the class, so `deft train` errors read the same way.
    """

    def error(self, message: str) -> NoReturn:
        exit_with_usage_error(self.prog, message)


def exit_with_usage_error(prog: str, message: str) -> NoReturn:
    """Print a usage error as one line on stderr and exit with status 2, as argparse does."""
    print(f"{prog}: error: {message}; run `{prog} --help` for the options", file=sys.stderr)
    raise SystemExit(2)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        help="dataset: a .jsonl/.jsonl.gz/.json/.parquet/.csv file, a Hugging Face "
        "dataset id, a local dataset folder, or 'sample' for the bundled sample",
    )
    parser.add_argument(
        "--columns",
        help="map input columns onto prompt/chosen/rejected, e.g. prompt=question,chosen=good,rejected=bad",
    )
    parser.add_argument("--subset", help="Hub datasets: the configuration (subset) name")
    parser.add_argument("--split", default="train", help="Hub datasets: the split to read (default: train)")
    parser.add_argument(
        "--strict", action="store_true", help="fail on the first bad row instead of skipping and reporting it"
    )
    parser.add_argument("--limit", type=int, help="read at most this many pairs")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="bundled",
        help="'bundled' (SmolLM2-135M-Instruct, the default), "
        "a Hub model id, a local transformers folder, or a .gguf file",
    )
    parser.add_argument(
        "--template",
        default="auto",
        choices=["auto", "chat", "raw"],
        help="prompt rendering: the model's chat template (auto picks it when the model "
        "has one) or HH-style raw text",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=1024,
        help="maximum tokens of prompt + response; longer pairs are cut and flagged (default: 1024)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="deft", description="Score, filter and audit preference data with the DEFT distribution reward."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score every pair and write a Parquet score file")
    add_data_arguments(score)
    add_model_arguments(score)
    score.add_argument(
        "--out",
        required=True,
        help="score file to write (.parquet; metadata goes to NAME.meta.json beside it)",
    )
    score.add_argument(
        "--reward-form",
        default="logprob",
        choices=["logprob", "prob"],
        help="r = mean over tokens of Q_diff . log p (logprob, default) or Q_diff . p (prob)",
    )
    score.add_argument(
        "--pair-score",
        default="margin",
        choices=["margin", "chosen"],
        help="s = r(chosen) - r(rejected) (margin, default) or r(chosen)",
    )
    score.add_argument(
        "--alpha", type=float, default=0.0, help="additive smoothing of token counts (default: 0)"
    )
    score.add_argument("--reference", help="compute Q_diff on this dataset instead of the scored one")
    score.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default: 16)")
    score.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    score.add_argument(
        "--dtype",
        default="auto",
        help="auto (bf16 where supported, else float32), float32, bfloat16 or float16",
    )
    score.add_argument("--no-cache", action="store_true", help="recompute even if the scores are cached")

    filter_ = commands.add_parser(
        "filter", help="keep a subset of scored pairs, written in the input's format"
    )
    filter_.add_argument("scores", help="score file written by `deft score`")
    choice = filter_.add_mutually_exclusive_group(required=True)
    choice.add_argument("--top", type=float, metavar="P", help="keep the P%% highest-scoring pairs")
    choice.add_argument("--bottom", type=float, metavar="P", help="keep the P%% lowest-scoring pairs")
    choice.add_argument("--random", type=float, metavar="P", help="keep a random P%% (baseline)")
    choice.add_argument("--threshold", type=float, metavar="X", help="keep pairs with score >= X")
    filter_.add_argument("--seed", type=int, default=0, help="seed for --random (default: 0)")
    filter_.add_argument(
        "--out",
        required=True,
        help="kept pairs file; NAME.dropped.EXT and NAME.ids.json are written beside it",
    )

    audit = commands.add_parser("audit", help="read a dataset and report what was read, skipped and flagged")
    add_data_arguments(audit)
    audit.add_argument("--model", help="also check the length limit with this model's tokenizer")
    audit.add_argument("--template", default="auto", choices=["auto", "chat", "raw"])
    audit.add_argument("--max-length", type=int, default=1024)
    audit.add_argument("--json", action="store_true", help="print the audit as JSON")

    tokens = commands.add_parser("tokens", help="list the tokens that most separate chosen from rejected")
    add_data_arguments(tokens)
    add_model_arguments(tokens)
    tokens.add_argument("--top", type=int, default=20, help="tokens to list on each side (default: 20)")
    tokens.add_argument("--alpha", type=float, default=0.0, help="additive smoothing of token counts")

    from deft_core.training.command import add_train_arguments

    train = commands.add_parser(
        "train", help="train a LoRA adapter with a (DEFT-guided) DPO, SFT or PRO loss"
    )
    add_train_arguments(train)

    from deft_core.compare.command import add_compare_arguments

    compare = commands.add_parser(
        "compare", help="generate with the base model and finished runs on the same prompts and compare them"
    )
    add_compare_arguments(compare)

    from deft_core.ablation.command import add_ablate_arguments

    ablate = commands.add_parser(
        "ablate", help="train and evaluate top k%% vs random k%% vs full data, each with and without guidance"
    )
    add_ablate_arguments(ablate)
    return parser


def data_options(args: argparse.Namespace):
    from deft_core.loading import DataOptions, parse_columns

    return DataOptions(
        path=args.data,
        subset=args.subset,
        split=args.split,
        columns=parse_columns(args.columns),
        on_error="raise" if args.strict else "skip",
        limit=args.limit,
    )


def run_score(args: argparse.Namespace) -> int:
    from deft_core import distributed
    from deft_core.loading import load_pairs
    from deft_core.models import load_model
    from deft_core.scoring import ScoreOptions, score_data
    from deft_core.store import save_scores

    if not args.out.endswith(".parquet"):
        raise DeftError(f"--out {args.out}: score files are Parquet; give a name ending in .parquet")
    options = ScoreOptions(
        args.reward_form, args.pair_score, args.template, args.alpha, args.max_length, args.batch_size
    )
    # Under `accelerate launch` every process scores a share; the main process writes and reports.
    distributed.setup(args.device)
    data = load_pairs(data_options(args))
    if distributed.is_main():
        report_audit_briefly(data.audit)
    reference = None
    if args.reference:
        from deft_core.loading import DataOptions

        reference = load_pairs(DataOptions(args.reference))
    loaded = load_model(args.model, args.device, args.dtype)
    bar = ProgressBar()
    try:
        result = score_data(data, loaded, options, bar, reference, use_cache=not args.no_cache)
    finally:
        bar.close()
    if not distributed.is_main():
        return 0
    path = save_scores(args.out, result.table, result.meta)
    timing = result.meta["timing"]
    origin = (
        "from cache"
        if result.from_cache
        else f"in {timing['seconds']:.1f} s ({timing['tokens_per_s']:,.0f} tok/s)"
    )
    print(f"scored {count_noun(len(result.table), 'pair')} {origin}; wrote {path}")
    return 0


def report_audit_briefly(audit) -> None:
    print(
        f"read {count_noun(audit.rows_read, 'row')} from {audit.source}: "
        f"{count_noun(audit.pairs_loaded, 'pair')}, "
        f"{audit.rows_skipped} skipped",
        file=sys.stderr,
    )
    for kind, count in sorted(audit.counts.items()):
        print(f"  {kind}: {count}", file=sys.stderr)


def run_filter(args: argparse.Namespace) -> int:
    from deft_core.filtering import Selection, write_subset
    from deft_core.store import load_scores

    method = next(m for m in ("top", "bottom", "random", "threshold") if getattr(args, m) is not None)
    selection = Selection(method, getattr(args, method), args.seed)
    table, meta = load_scores(args.scores)
    summary = write_subset(table, meta, selection, args.out)
    if summary["kept"] == 0:
        low, high = table["score"].min(), table["score"].max()
        print(
            f"deft: warning: no pair has score >= {selection.value:g}; scores range from {low:.4g} "
            f"to {high:.4g}",
            file=sys.stderr,
        )
    total = summary["kept"] + summary["dropped"]
    print(
        f"kept {summary['kept']} of {count_noun(total, 'pair')} ({selection.describe()}); "
        f"wrote {summary['kept_path']} and {summary['dropped_path']}"
    )
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from deft_core.loading import load_pairs

    data = load_pairs(data_options(args))
    if args.model:
        from deft_core.encoding import PairEncoder
        from deft_core.models import load_tokenizer
        from deft_core.scoring import encode_data

        encode_data(data, PairEncoder(load_tokenizer(args.model), args.template, args.max_length))
    if args.json:
        print(json.dumps(data.audit.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(data.audit.summary_lines()))
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    from deft_core.distributions import TokenDistributions
    from deft_core.encoding import PairEncoder
    from deft_core.loading import load_pairs
    from deft_core.models import load_tokenizer, model_vocab_size

    data = load_pairs(data_options(args))
    tokenizer = load_tokenizer(args.model)
    encoded = PairEncoder(tokenizer, args.template, args.max_length).encode_many(data.pairs)
    vocab_size = model_vocab_size(args.model)
    distributions = TokenDistributions.from_encoded(encoded, tokenizer, vocab_size, args.alpha)
    for title, lowest in (
        ("tokens favoured in chosen responses (Q_diff > 0)", False),
        ("tokens favoured in rejected responses (Q_diff < 0)", True),
    ):
        print(title)
        print(f"  {'token':<20} {'Q_diff':>10} {'chosen':>8} {'rejected':>8}")
        for row in distributions.top_tokens(tokenizer, "q_diff", args.top, lowest=lowest):
            token, value = repr(row["token"]), row["value"]
            print(f"  {token:<20} {value:>10.2e} {row['chosen_count']:>8} {row['rejected_count']:>8}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from deft_core.training.command import run_train as train

    return train(args)


def run_compare(args: argparse.Namespace) -> int:
    from deft_core.compare.command import run_compare as compare

    return compare(args)


def run_ablate(args: argparse.Namespace) -> int:
    from deft_core.ablation.command import run_ablate as ablate

    return ablate(args)


COMMANDS = {
    "score": run_score,
    "filter": run_filter,
    "audit": run_audit,
    "tokens": run_tokens,
    "train": run_train,
    "compare": run_compare,
    "ablate": run_ablate,
}


def unrecognized_message(args: argparse.Namespace, extra: list[str]) -> str:
    """Describe arguments that no option takes; a bare YAML file for train or ablate gets a hint."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    yaml_files = [item for item in extra if item.endswith((".yaml", ".yml"))]
    takes_config = args.command in ("train", "ablate") and not (args.config or args.resume)
    if takes_config and yaml_files:
        message += f"; give a config file as --config {yaml_files[0]}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        exit_with_usage_error(f"deft {args.command}", unrecognized_message(args, extra))
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.debug:
        quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except DeftError as error:
        if args.debug:
            raise
        print(f"deft: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout stopped early (as `deft tokens | head` does): exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def quiet_libraries() -> None:
    """Silence the progress bars and warnings that transformers prints on every model load."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    # peft reads an attribute that transformers 5.23 renamed. Users cannot act on that warning.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    except ImportError:
        pass
