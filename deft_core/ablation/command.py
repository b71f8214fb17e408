"""`deft ablate`: run the DEFT ablation from a YAML config and flags, or resume one, in this process.

Every AblationConfig field is also a flag (`--k-percent 5`, `--max-steps 8`) that overrides the
config file. The table of results is printed to stdout at the end. The exit status is 0 for a
completed or cancelled ablation, 1 for a failed one, and 2 for an invalid request (the CLI's
DeftError handling).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from deft_core.ablation.config import ablation_field_help, ablation_field_types, load_ablation_config
from deft_core.errors import DeftError
from deft_core.progress import ProgressBar
from deft_core.training.command import add_override_flags, flag_overrides


def add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="YAML ablation config, e.g. configs/ablation-sample.yaml")
    source.add_argument(
        "--resume",
        metavar="ABLATION",
        help="continue an ablation (its folder or id): finished variants are skipped",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_override_flags(parser, ablation_field_help(), ablation_field_types())


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the ablation config fields given as flags; dict fields are read as JSON."""
    return flag_overrides(args, ablation_field_types())


def run_ablate(args: argparse.Namespace) -> int:
    from deft_core.ablation import results as tables
    from deft_core.ablation.folder import create_ablation, open_ablation
    from deft_core.ablation.runner import execute_ablation

    overrides = collect_overrides(args)
    if args.resume:
        if overrides:
            raise DeftError(
                "--resume continues an ablation with its saved config; flags that change it are not allowed"
            )
        ablation = open_ablation(args.resume)
        status = ablation.status()
        state = status["state"]
        # launch_ablation marks the ablation running with this process's pid before it gets here.
        if state == "running" and status.get("pid") != os.getpid():
            raise DeftError(f"ablation {ablation.ablation_id} is already running (pid {status.get('pid')})")
        if state == "completed":
            print(tables.table_text(ablation.results()["rows"]))
            return 0
        ablation.cancel_path.unlink(missing_ok=True)
        config = ablation.config()
    else:
        if not (args.config or overrides):
            raise DeftError(
                "no ablation config: give --config FILE.yaml (e.g. configs/ablation-sample.yaml), "
                "--resume ABLATION to continue an ablation, or the settings as flags (see --help)"
            )
        config = load_ablation_config(args.config, overrides)
        if args.print_config:
            print(config.to_yaml(), end="")
            return 0
        if problems := config.missing_files():
            raise DeftError("; ".join(problems))
        ablation = create_ablation(config)
    print(f"ablation {ablation.ablation_id}: {ablation.path}", file=sys.stderr)

    bars = ProgressBar()
    try:
        code = execute_ablation(ablation, bars)
    finally:
        bars.close()
    results = ablation.results()
    if results["rows"]:
        print(tables.table_text(results["rows"]))
    state = ablation.status()["state"]
    if state == "completed":
        print(f"results: {ablation.path / 'results.csv'}; plots: {ablation.plots_path}", file=sys.stderr)
    elif state == "cancelled":
        print(f"cancelled; continue with `deft ablate --resume {ablation.ablation_id}`", file=sys.stderr)
    return code
