"""Run folders under the deft home, their status, cancellation, and launching a run in its own process.

Layout of deft_home()/runs/<run-id>/:
    config.yaml         the resolved TrainConfig
    status.json         state (pending, running, completed, cancelled, failed), step, pid, error
    metrics.jsonl       one JSON object per logging or evaluation step, flat "split/metric" keys
    train.log           the run's log; process.log contains the subprocess's stdout and stderr
    token_check.txt     the tokens of one rendered pair and the BOS/EOS check
    checkpoints/step-N/ adapter, optimizer, scheduler, step and RNG states
    adapter/            the final LoRA adapter (peft save_pretrained, safetensors)
    merged/             optional: the base model with the adapter merged, transformers format
    summary.json        final metrics, timing and data counts
    CANCEL              present when a cancel was requested
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from deft_core.home import deft_home
from deft_core.job_folders import JobFolder, find_folder, list_folders, now, unique_folder
from deft_core.sources import atomic_path
from deft_core.training.config import TrainConfig, load_config

logger = logging.getLogger(__name__)


def runs_root() -> Path:
    root = deft_home() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class RunDir(JobFolder):
    """One training run's folder; all files are written atomically except the appended logs."""

    kind: ClassVar[str] = "run"
    command: ClassVar[str] = "train"
    log_name: ClassVar[str] = "train.log"
    pending: ClassVar[dict[str, Any]] = {"step": 0}

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def config(self) -> TrainConfig:
        return load_config(self.config_path)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """Return every metrics record; a half-written last line (from a live run) is skipped."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def summary(self) -> dict[str, Any] | None:
        path = self.path / "summary.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def latest_checkpoint(self) -> Path | None:
        steps = sorted(
            (int(p.name.split("-")[1]), p)
            for p in self.checkpoints.glob("step-*")
            if (p / "state.json").is_file()
        )
        return steps[-1][1] if steps else None

    def request_cancel(self) -> None:
        """Ask the training process to save a checkpoint and stop; it checks between optimizer steps."""
        self.cancel_path.touch()


def create_run(config: TrainConfig, root: Path | None = None) -> RunDir:
    """Make a new run folder named by time, method and label, and write its resolved config."""
    root = root or runs_root()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.name).strip("-")
    guided = "deft-" if config.guidance_weight > 0 else ""
    base = f"{stamp}-{guided}{config.method}" + (f"-{label}" if label else "")
    run = RunDir(unique_folder(root, base))
    with atomic_path(run.config_path) as temporary:
        temporary.write_text(config.to_yaml(), encoding="utf-8")
    run.set_status("pending", step=0, created_at=now())
    return run


def open_run(spec: str | Path) -> RunDir:
    """Find a run by folder path or by run id under the runs folder."""
    return RunDir(find_folder(spec, runs_root(), "run"))


def list_runs(root: Path | None = None) -> list[RunDir]:
    """Return the runs, newest first."""
    return list_folders(root or runs_root(), RunDir)


def launch(run: RunDir) -> subprocess.Popen:
    """Start (or resume) a run in a new process: `python -m deft_core train --resume RUN`."""
    return run.launch()
