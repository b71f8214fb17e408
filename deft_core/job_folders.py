"""Folders of jobs that run in their own process: training runs and ablations.

Each folder has config.yaml, status.json (state, pid, error and the job's own fields), a log and
process.log (the process's stdout and stderr), and a CANCEL file while a cancel is requested.
JSON files are written atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from deft_core.errors import DeftError
from deft_core.sources import atomic_path

logger = logging.getLogger(__name__)

STATES = ("pending", "running", "completed", "cancelled", "failed")
JobFolderType = TypeVar("JobFolderType", bound="JobFolder")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, value: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")


def read_json(path: Path) -> Any:
    """Return a JSON file's content, or None when it is missing or cannot be parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child that was never waited for is a zombie (state "Z"), so it counts as ended.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return True
    return state != "Z"


def unique_folder(root: Path, base: str) -> Path:
    """Create and return root/base, or root/base-2, base-3, ... when that name is taken."""
    path = root / base
    suffix = 2
    while path.exists():
        path = root / f"{base}-{suffix}"
        suffix += 1
    path.mkdir(parents=True)
    return path


def find_folder(spec: str | Path, root: Path, kind: str) -> Path:
    """Return the job folder that `spec` names: a folder path, or a job id under `root`."""
    path = Path(spec)
    if not path.is_dir():
        path = root / str(spec)
    if not path.is_dir():
        raise DeftError(f"{kind} not found: {spec} is neither a folder nor a {kind} id in {root}")
    if not (path / "config.yaml").is_file():
        raise DeftError(f"{path} is not a {kind} folder: it has no config.yaml; {kind}s are listed in {root}")
    return path


def list_folders(root: Path, folder_class: type[JobFolderType]) -> list[JobFolderType]:
    """Return the job folders under root (those with a config.yaml), newest first."""
    if not root.is_dir():
        return []
    found = [folder_class(p) for p in root.iterdir() if (p / "config.yaml").is_file()]
    return sorted(found, key=lambda folder: folder.path.stat().st_mtime, reverse=True)


@dataclass
class JobFolder:
    """One job's folder; subclasses name the job kind, its CLI command and its log file."""

    path: Path

    kind: ClassVar[str] = "job"  # in messages: "run", "ablation"
    command: ClassVar[str] = ""  # the `python -m deft_core` command that resumes the job
    log_name: ClassVar[str] = "job.log"
    pending: ClassVar[dict[str, Any]] = {}  # status fields before the first status.json

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def cancel_path(self) -> Path:
        return self.path / "CANCEL"

    def status(self) -> dict[str, Any]:
        """Return status.json; a "running" job whose process has ended is reported as failed."""
        status = read_json(self.path / "status.json")
        if not isinstance(status, dict):
            return {"state": "pending", **self.pending}
        if status.get("state") == "running" and not process_alive(status.get("pid")):
            status = {
                **status,
                "state": "failed",
                "error": f"the {self.kind} process ended without reporting",
            }
        return status

    def set_status(self, state: str, **fields: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown {self.kind} state {state!r}")
        current = read_json(self.path / "status.json")
        current = current if isinstance(current, dict) else {}
        write_json(self.path / "status.json", {**current, **fields, "state": state, "updated_at": now()})

    def cancel_requested(self) -> bool:
        return self.cancel_path.exists()

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the job's log and of process.log."""
        texts = []
        for name in (self.log_name, "process.log"):
            path = self.path / name
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                texts.append("\n".join(text.splitlines()[-lines:]))
        return "\n".join(texts)

    def launch(self) -> subprocess.Popen:
        """Start (or resume) the job in a new process: `python -m deft_core COMMAND --resume FOLDER`.

        The child runs in its own session, so it survives a dashboard rerun, and writes its
        output to process.log. A stale cancel request from an earlier attempt is removed first.
        """
        status = self.status()
        name = self.path.name
        if status["state"] == "running":
            raise DeftError(f"{self.kind} {name} is already running (pid {status.get('pid')})")
        if status["state"] == "completed":
            raise DeftError(f"{self.kind} {name} is already completed; start a new {self.kind} instead")
        self.cancel_path.unlink(missing_ok=True)
        command = [sys.executable, "-m", "deft_core", self.command, "--resume", str(self.path)]
        with open(self.path / "process.log", "a", encoding="utf-8") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.set_status("running", pid=process.pid, error=None)
        logger.info("launched %s %s as pid %d", self.kind, name, process.pid)
        return process
