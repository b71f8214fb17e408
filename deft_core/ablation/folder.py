"""Ablation folders under the deft home, their status, progress, results, cancellation and launch.

Layout of deft_home()/ablations/<ablation-id>/:
    config.yaml      the resolved AblationConfig
    status.json      state (pending, running, completed, cancelled, failed), pid, phase, the run
                     folder of each variant, error
    progress.json    the current variant, its phase (training, evaluating) and step or prompt count
    results.json     one row per evaluated model (base first), plus the held-out counts
    results.csv      the same rows as a table
    evaluations/     NAME.json: evaluate_model's full output for the base model and each variant
    plots.html       accuracy, reward, BLEU and training time per variant (plotly, offline)
    runs/            the variants' training runs, ordinary run folders (see training/runs.py)
    ablation.log     the log; process.log holds a background process's stdout and stderr
    CANCEL           present when a cancel was requested
Every JSON, CSV and HTML file is written atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from deft_core.ablation.config import AblationConfig, load_ablation_config
from deft_core.home import deft_home
from deft_core.job_folders import (
    JobFolder,
    find_folder,
    list_folders,
    now,
    read_json,
    unique_folder,
    write_json,
)
from deft_core.sources import atomic_path
from deft_core.training.runs import RunDir

logger = logging.getLogger(__name__)


def ablations_root() -> Path:
    root = deft_home() / "ablations"
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class AblationDir(JobFolder):
    """One ablation's folder; see the module docstring for its files."""

    kind: ClassVar[str] = "ablation"
    command: ClassVar[str] = "ablate"
    log_name: ClassVar[str] = "ablation.log"

    @property
    def ablation_id(self) -> str:
        return self.path.name

    @property
    def runs_folder(self) -> Path:
        return self.path / "runs"

    @property
    def plots_path(self) -> Path:
        return self.path / "plots.html"

    def config(self) -> AblationConfig:
        return load_ablation_config(self.config_path)

    def progress(self) -> dict[str, Any]:
        return read_json(self.path / "progress.json") or {}

    def write_progress(self, values: dict[str, Any]) -> None:
        write_json(self.path / "progress.json", {**values, "updated_at": now()})

    def results(self) -> dict[str, Any]:
        """Return results.json: {"rows": [...], "held_out": ...}; empty rows before the first model."""
        return read_json(self.path / "results.json") or {"rows": []}

    def write_results(self, results: dict[str, Any]) -> None:
        write_json(self.path / "results.json", results)

    def write_text(self, name: str, text: str) -> Path:
        """Write a text file of the folder atomically; return its path."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_text(text, encoding="utf-8")
        return path

    def variant_run(self, variant: str) -> RunDir | None:
        """Return the run folder recorded for a variant, or None before it started."""
        recorded = self.status().get("runs", {}).get(variant)
        if recorded and (Path(recorded) / "config.yaml").is_file():
            return RunDir(Path(recorded))
        return None

    def request_cancel(self) -> None:
        """Request a stop: the current run saves a checkpoint after its current step.

        The cancel request also goes to the current run's own folder, because the training loop
        checks only that run's cancel file.
        """
        self.cancel_path.touch()
        current = self.status().get("current_run")
        if current and Path(current).is_dir():
            RunDir(Path(current)).request_cancel()


def create_ablation(config: AblationConfig, root: Path | None = None) -> AblationDir:
    """Make a new ablation folder named by time, method and k, and write its resolved config."""
    root = root or ablations_root()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.name).strip("-")
    base = f"{stamp}-{config.method}-k{config.k_percent:g}" + (f"-{label}" if label else "")
    ablation = AblationDir(unique_folder(root, base))
    ablation.write_text("config.yaml", config.to_yaml())
    ablation.set_status("pending", created_at=now(), runs={}, finished=[])
    return ablation


def open_ablation(spec: str | Path) -> AblationDir:
    """Find an ablation by folder path or by id under the ablations folder."""
    return AblationDir(find_folder(spec, ablations_root(), "ablation"))


def list_ablations(root: Path | None = None) -> list[AblationDir]:
    """Return the ablations, newest first."""
    return list_folders(root or ablations_root(), AblationDir)


def launch_ablation(ablation: AblationDir) -> subprocess.Popen:
    """Start (or resume) an ablation in a new process: `python -m deft_core ablate --resume ID`."""
    return ablation.launch()


def progress_summary(ablation: AblationDir, models: int = 7) -> tuple[float, str]:
    """Return (fraction done, one line) for an ablation of `models` models (the base and 6 variants).

    The fraction counts finished models, plus the current model's share of its phase.
    """
    status = ablation.status()
    finished = len(status.get("finished", []))
    state = status["state"]
    if state != "running":
        return finished / models, f"{state}: {finished} of {models} models evaluated"
    progress = ablation.progress()
    done, total = progress.get("done", 0), progress.get("total") or 1
    within = min(1.0, done / total) if progress.get("variant") == status.get("current_variant") else 0.0
    variant, phase, unit = (progress.get(k, "?") for k in ("variant", "phase", "unit"))
    where = f"{variant}: {phase}, {done:g} of {total:g} {unit}"
    fraction = min(1.0, (finished + within) / models)
    return fraction, f"{finished} of {models} models evaluated; now {where}"
