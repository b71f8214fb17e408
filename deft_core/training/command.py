"""`deft train`: start a run from a YAML config and flags, or resume one, in this process.

Every TrainConfig field is also a flag (`--learning-rate 1e-4`, `--target-modules q_proj,v_proj`)
that overrides the config file. The exit status is 0 for a completed or cancelled run, 1 for a
failed one, and 2 for an invalid request (the CLI's DeftError handling).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from deft_core.errors import DeftError
from deft_core.training.config import field_help, field_types, load_config

logger = logging.getLogger(__name__)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML training config, e.g. configs/deft-dpo.yaml")
    source.add_argument(
        "--resume", metavar="RUN", help="continue a run (its folder or run id) from its last checkpoint"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    overrides = parser.add_argument_group("config overrides (each sets the field of the same name)")
    types = field_types()
    for name, help_text in field_help().items():
        kind = types[name]
        metavar = {list: "A,B", dict: "JSON", bool: "true|false"}.get(kind, kind.__name__.upper())
        overrides.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"set_{name}",
            metavar=metavar,
            help=help_text.replace("%", "%%"),
        )


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the fields given as flags; dict fields are read as JSON."""
    overrides: dict[str, Any] = {}
    for name, kind in field_types().items():
        value = getattr(args, f"set_{name}", None)
        if value is None:
            continue
        if kind is dict:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise DeftError(f"--{name.replace('_', '-')} takes a JSON object, got {value!r}") from error
        overrides[name] = value
    return overrides


def run_train(args: argparse.Namespace) -> int:
    from deft_core.training.runs import create_run, open_run

    overrides = collect_overrides(args)
    if args.resume:
        if overrides:
            raise DeftError(
                "--resume continues a run with its saved config; flags that change it are not allowed"
            )
        run = open_run(args.resume)
        config = run.config()
    else:
        config = load_config(args.config, overrides)
        if args.print_config:
            print(config.to_yaml(), end="")
            return 0
        if problems := config.missing_files():
            raise DeftError("; ".join(problems))
        run = create_run(config)
    print(f"run {run.run_id}: {run.path}", file=sys.stderr)
    return execute(run, config)


def execute(run, config) -> int:
    """Train in this process with the run's log file attached; mark the run failed on any error."""
    from deft_core.training.loop import train_run

    handler = logging.FileHandler(run.path / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    package_logger = logging.getLogger("deft_core")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    package_logger.setLevel(logging.INFO)
    previous_signal = signal.signal(signal.SIGTERM, lambda *_: run.request_cancel())
    try:
        run.set_status("running", pid=os.getpid(), error=None)
        summary = train_run(config, run)
    except KeyboardInterrupt:
        # Ctrl-C stops at once; resume continues from the last saved checkpoint.
        run.set_status("cancelled", error="interrupted before a checkpoint was saved")
        raise
    except BaseException as error:
        message = f"{type(error).__name__}: {error}"
        run.set_status("failed", error=message)
        if isinstance(error, DeftError):
            # A user mistake (missing file, bad value): one line, no traceback.
            logger.error("run %s failed: %s", run.run_id, message)
            raise
        logger.error("run %s failed: %s\n%s", run.run_id, message, traceback.format_exc())
        print(f"deft: run {run.run_id} failed: {message}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_signal)
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()
    print(json.dumps(summary_line(summary, run.path), indent=2), file=sys.stdout)
    return 0


def summary_line(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    def pick(record: dict | None) -> dict | None:
        if not record:
            return None
        keys = ("eval/loss", "eval/preference_accuracy", "eval/rewards/accuracies", "eval/rewards/margins")
        return {k: round(record[k], 4) for k in keys if k in record}

    return {
        "run": str(path),
        "state": summary["state"],
        "step": summary["step"],
        "wall_seconds": summary["wall_seconds"],
        "peak_rss_mib": summary["peak_rss_mib"],
        "eval_before": pick(summary["eval_first"]),
        "eval_after": pick(summary["eval_last"]),
    }
