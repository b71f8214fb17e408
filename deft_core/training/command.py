"""`deft train`: start a run from a YAML config and flags, or resume one, in this process.

Every TrainConfig field is also a flag (`--learning-rate 1e-4`, `--target-modules q_proj,v_proj`)
that overrides the config file. The exit status is 0 for a completed or cancelled run, 1 for a
failed one, and 2 for an invalid request (the CLI's DeftError handling).

Under `accelerate launch` every process runs this command. The main process creates or opens
the run folder and sends its path and config to the others (deft_core.distributed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from contextlib import suppress
from pathlib import Path
from typing import Any

from deft_core import distributed
from deft_core.errors import DeftError
from deft_core.loading import parse_columns
from deft_core.progress import Progress, ProgressBar, ProgressCallback
from deft_core.training.config import TrainConfig, field_help, field_types, load_config

logger = logging.getLogger(__name__)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    # Not required=True: run_train reports a missing source in one line with an example.
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="YAML training config, e.g. configs/deft-dpo.yaml")
    source.add_argument(
        "--resume", metavar="RUN", help="continue a run (its folder or run id) from its last checkpoint"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_override_flags(parser, field_help(), field_types())


def add_override_flags(parser: argparse.ArgumentParser, helps: dict[str, str], types: dict[str, Any]) -> None:
    """Add a `--NAME` flag for every config field, stored as `set_NAME` (see flag_overrides)."""
    overrides = parser.add_argument_group("config overrides (each sets the field of the same name)")
    for name, help_text in helps.items():
        kind = types[name]
        metavar = {list: "A,B", dict: "JSON", bool: "true|false"}.get(kind, kind.__name__.upper())
        overrides.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"set_{name}",
            metavar=metavar,
            help=help_text.replace("%", "%%"),
        )


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the training config fields given as flags."""
    return flag_overrides(args, field_types())


def flag_overrides(args: argparse.Namespace, types: dict[str, Any]) -> dict[str, Any]:
    """Return the fields of `types` given as `set_NAME` flags.

    Dict fields are read as JSON; a `columns` field also accepts "prompt=question,chosen=good".
    """
    overrides: dict[str, Any] = {}
    for name, kind in types.items():
        value = getattr(args, f"set_{name}", None)
        if value is None:
            continue
        if name == "columns" and not value.lstrip().startswith("{"):
            value = parse_columns(value)
        elif kind is dict:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise DeftError(f"--{name.replace('_', '-')} takes a JSON object, got {value!r}") from error
        overrides[name] = value
    return overrides


def run_train(args: argparse.Namespace) -> int:
    from deft_core.training.runs import RunDir

    if not (args.config or args.resume):
        raise DeftError(
            "no training config: give --config FILE.yaml (e.g. configs/sample-dpo.yaml) "
            "or --resume RUN to continue a run"
        )
    overrides = collect_overrides(args)
    if args.resume and overrides:
        raise DeftError(
            "--resume continues a run with its saved config; flags that change it are not allowed"
        )
    if args.print_config and not args.resume:
        print(load_config(args.config, overrides).to_yaml(), end="")
        return 0

    distributed.setup()
    prepared: tuple[str, dict] | DeftError | None = None
    if distributed.is_main():
        try:
            run, config = prepare_run(args, overrides)
            prepared = (str(run.path), config.to_dict())
        except DeftError as error:
            prepared = error
    # Every process stops on the main process's error, or continues with its run and config.
    prepared = distributed.broadcast_object(prepared)
    if isinstance(prepared, DeftError):
        if not distributed.is_main():
            raise SystemExit(2)  # the main process prints the error
        raise prepared
    if not distributed.is_main():
        run, config = RunDir(Path(prepared[0])), TrainConfig(**prepared[1])
    distributed.check_device(config.device)
    if distributed.is_main():
        print(f"run {run.run_id}: {run.path}", file=sys.stderr)
    return execute(run, config)


def prepare_run(args: argparse.Namespace, overrides: dict[str, Any]):
    """Open the run to resume, or check the config and create a new run folder; return (run, config)."""
    from deft_core.training.runs import create_run, open_run

    if args.resume:
        run = open_run(args.resume)
        status = run.status()
        # launch() marks the run running with this process's pid before it gets here.
        if status["state"] == "running" and status.get("pid") != os.getpid():
            raise DeftError(f"run {run.run_id} is already running (pid {status.get('pid')})")
        if status["state"] == "completed":
            raise DeftError(
                f"run {run.run_id} is already completed (step {status.get('step')}); "
                "start a new run with --config to train again"
            )
        config = run.config()
        check_processes(config)
        if status["state"] == "cancelled":
            # The run stopped for this cancel request; resuming clears it. A request made before a
            # pending run started is kept, so the run stops where asked.
            run.cancel_path.unlink(missing_ok=True)
        return run, config
    config = load_config(args.config, overrides)
    if problems := config.missing_files():
        raise DeftError("; ".join(problems))
    check_processes(config)
    return create_run(config), config


def check_processes(config: TrainConfig) -> None:
    """Reject a grad_accum that the launched processes cannot share, before a run folder exists."""
    if distributed.world_size() > 1:
        from deft_core.training.loop import local_micro_batches

        local_micro_batches(config)


def execute(run, config) -> int:
    """Train in this process with the run's log file attached; mark the run failed on any error.

    Under a launch only the main process writes the log, status and summary.
    """
    from deft_core.training.loop import train_run

    main = distributed.is_main()
    package_logger = logging.getLogger("deft_core")
    previous_level = package_logger.level
    handler = None
    if main:
        handler = logging.FileHandler(run.path / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
    previous_signal = signal.signal(signal.SIGTERM, lambda *_: request_cancel(run))
    progress = step_progress() if main else None
    try:
        if main:
            run.set_status("running", pid=os.getpid(), error=None)
        summary = train_run(config, run, progress)
    except KeyboardInterrupt:
        # Ctrl-C stops at once; resume continues from the last saved checkpoint.
        if main:
            run.set_status("cancelled", error="interrupted before a checkpoint was saved")
        raise
    except BaseException as error:
        message = f"{type(error).__name__}: {error}"
        if main:
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
        if isinstance(progress, ProgressBar):
            progress.close()
        if handler is not None:
            package_logger.removeHandler(handler)
            package_logger.setLevel(previous_level)
            handler.close()
    if main:
        print(json.dumps(summary_line(summary, run.path), indent=2), file=sys.stdout)
        if summary["state"] == "cancelled":
            print(
                f"cancelled at step {summary['step']}; continue with `deft train --resume {run.run_id}`",
                file=sys.stderr,
            )
        else:
            adapter = run.path / "adapter"
            print(f"adapter: {adapter}; compare it with `deft compare {run.run_id}`", file=sys.stderr)
    return 0


def step_progress() -> ProgressCallback:
    """Return a tqdm bar on a terminal, or one stderr line per step (a log file, the dashboard)."""
    if sys.stderr.isatty():
        return ProgressBar()
    return print_step


def print_step(progress: Progress) -> None:
    eta = progress.eta_s
    left = f", about {eta:.0f} s left" if eta is not None and progress.done < progress.total else ""
    print(
        f"{progress.stage}: {progress.done:g} of {progress.total} steps, "
        f"{progress.tokens_per_s:,.0f} tokens/s{left}",
        file=sys.stderr,
        flush=True,
    )


def request_cancel(run) -> None:
    """Handle SIGTERM: ask for a checkpoint and a stop after the current optimizer step.

    A process on another machine may have no run folder; the main process's request decides.
    """
    with suppress(OSError):
        run.request_cancel()


def summary_line(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    def pick(record: dict | None) -> dict | None:
        if not record:
            return None
        keys = ("eval/loss", "eval/preference_accuracy", "eval/rewards/accuracies", "eval/rewards/margins")
        # A cancelled run's last evaluation may precede its last step, so each record carries its step.
        return {"step": record.get("step"), **{k: round(record[k], 4) for k in keys if k in record}}

    return {
        "run": str(path),
        "state": summary["state"],
        "step": summary["step"],
        "wall_seconds": summary["wall_seconds"],
        "peak_rss_mib": summary["peak_rss_mib"],
        "eval_before": pick(summary["eval_first"]),
        "eval_after": pick(summary["eval_last"]),
    }
