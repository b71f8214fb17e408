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
from deft_core.progress import Progress
from deft_core.training.command import flag_overrides


def add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="YAML ablation config, e.g. configs/ablation-sample.yaml")
    source.add_argument(
        "--resume",
        metavar="ABLATION",
        help="continue an ablation (its folder or id): finished variants are skipped",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    overrides = parser.add_argument_group("config overrides (each sets the field of the same name)")
    types = ablation_field_types()
    for name, help_text in ablation_field_help().items():
        kind = types[name]
        metavar = {dict: "JSON", bool: "true|false"}.get(kind, kind.__name__.upper())
        overrides.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"set_{name}",
            metavar=metavar,
            help=help_text.replace("%", "%%"),
        )


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the ablation config fields given as flags; dict fields are read as JSON."""
    return flag_overrides(args, ablation_field_types())


class StageBars:
    """Render the ablation's Progress on stderr, one tqdm bar per stage (training or evaluating a model)."""

    def __init__(self) -> None:
        self.stage = ""
        self.bar = None

    def __call__(self, progress: Progress) -> None:
        from tqdm import tqdm

        if progress.stage != self.stage or self.bar is None:
            self.close()
            self.stage = progress.stage
            self.bar = tqdm(total=progress.total, unit=progress.unit, desc=progress.stage, file=sys.stderr)
        self.bar.n = round(progress.done)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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

    bars = StageBars()
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
