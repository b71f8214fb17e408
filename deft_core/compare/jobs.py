"""Background comparisons for the dashboard: one thread per request key, progress in a JSON file.

This follows deft_core.jobs (background scoring). A job runs compare_models and save_comparison
in a daemon thread of the serving process, so a browser tab may rerun, reload or close without
stopping it. Its status is written atomically to `deft_home()/jobs/compare-<request key>.json`.
A finished status names the saved results.json, so the same request later opens that result
instead of generating again. Comparison jobs run one at a time.
NOTE: a comparison and a scoring job may still run at once; each uses every CPU core.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deft_core.compare.comparison import CompareRequest, compare_models, save_comparison
from deft_core.errors import DeftError
from deft_core.jobs import jobs_folder, now_text
from deft_core.progress import Progress
from deft_core.sources import atomic_path

logger = logging.getLogger(__name__)

# Seconds between two status writes while a job runs; state changes are always written.
WRITE_INTERVAL_S = 0.5

_registry: dict[str, CompareJob] = {}
_registry_lock = threading.Lock()
_slots = threading.Semaphore(1)


class CompareCancelled(Exception):
    """Raised inside the progress callback to stop a cancelled comparison between two batches."""


@dataclass
class CompareStatus:
    """The state of one comparison job: queued, running, done, failed, cancelled or interrupted."""

    key: str
    state: str
    description: str = ""
    stage: str = "waiting"
    done: float = 0.0
    total: int = 0
    unit: str = ""
    elapsed_s: float = 0.0
    error: str = ""
    result: str = ""  # path of the saved results.json once done
    pid: int = 0
    started_at: str = ""
    updated_at: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def status_path(key: str) -> Path:
    return jobs_folder() / f"compare-{key}.json"


def write_status(status: CompareStatus) -> None:
    status.updated_at = now_text()
    with atomic_path(status_path(status.key)) as temporary:
        temporary.write_text(json.dumps(asdict(status), indent=1), encoding="utf-8")


def read_status(key: str) -> CompareStatus | None:
    """Read a job's status file; None when there is none or it cannot be parsed."""
    try:
        return CompareStatus(**json.loads(status_path(key).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError) as error:
        logger.warning("ignoring unreadable comparison status %s: %s", status_path(key), error)
        return None


class CompareJob:
    """One background run of compare_models that reports progress and can be cancelled."""

    def __init__(self, key: str, request: CompareRequest, description: str) -> None:
        self.key = key
        self.request = request
        self.cancel_event = threading.Event()
        self.status = CompareStatus(
            key=key, state="queued", description=description, pid=os.getpid(), started_at=now_text()
        )
        self.started = time.monotonic()
        self.last_write = 0.0
        self.thread = threading.Thread(target=self.run, name=f"deft-compare-{key}", daemon=True)

    def report(self, progress: Progress) -> None:
        if self.cancel_event.is_set():
            raise CompareCancelled
        changed = progress.stage != self.status.stage
        self.status.stage = progress.stage
        self.status.done = progress.done
        self.status.total = progress.total
        self.status.unit = progress.unit
        self.status.elapsed_s = round(time.monotonic() - self.started, 1)
        if changed or time.monotonic() - self.last_write >= WRITE_INTERVAL_S:
            self.last_write = time.monotonic()
            write_status(self.status)

    def run(self) -> None:
        with _slots:
            if self.cancel_event.is_set():
                self.finish("cancelled")
                return
            self.status.state = "running"
            self.status.stage = "loading the data and Q_diff"
            write_status(self.status)
            logger.info("comparison %s started: %s", self.key, self.status.description)
            try:
                comparison = compare_models(self.request, progress=self.report)
                path = save_comparison(comparison)
            except CompareCancelled:
                logger.info("comparison %s cancelled at %s", self.key, self.status.stage)
                self.finish("cancelled")
            except DeftError as error:
                logger.warning("comparison %s failed: %s", self.key, error)
                self.finish("failed", str(error))
            except Exception as error:  # a job thread must always record why it stopped
                logger.exception("comparison %s failed", self.key)
                self.finish("failed", f"{type(error).__name__}: {error}")
            else:
                self.status.result = str(path)
                self.finish("done")

    def finish(self, state: str, error: str = "") -> None:
        self.status.state = state
        self.status.error = error
        self.status.elapsed_s = round(time.monotonic() - self.started, 1)
        write_status(self.status)
        with _registry_lock:
            if _registry.get(self.key) is self:
                del _registry[self.key]


def compare_status(key: str) -> CompareStatus | None:
    """Return the live status of a job in this process, or the stored status of an earlier one.

    A stored job that claims to run but has no thread in this process stopped with its process,
    so it is returned as "interrupted". A done job whose results file is gone is returned as None.
    """
    with _registry_lock:
        job = _registry.get(key)
    if job is not None:
        return job.status
    status = read_status(key)
    if status is None:
        return None
    if status.active:
        status.state = "interrupted"
        status.error = "the dashboard server stopped while this comparison ran; start it again"
    if status.state == "done" and not Path(status.result).is_file():
        return None
    return status


def start_compare(request: CompareRequest, description: str = "") -> CompareStatus:
    """Start a comparison in the background unless one for the same request runs or is saved."""
    key = request.key()
    with _registry_lock:
        running = _registry.get(key)
        if running is not None:
            return running.status
        stored = read_status(key)
        if stored is not None and stored.state == "done" and Path(stored.result).is_file():
            return stored
        job = CompareJob(key, request, description)
        _registry[key] = job
        write_status(job.status)
        job.thread.start()
        return job.status


def cancel_compare(key: str) -> bool:
    """Ask a running comparison to stop after its current batch; return False when none runs."""
    with _registry_lock:
        job = _registry.get(key)
    if job is None:
        return False
    job.cancel_event.set()
    logger.info("comparison %s: cancel requested", key)
    return True


def wait_for_compare(key: str, timeout_s: float) -> CompareStatus | None:
    """Block until the job stops, or the timeout passes; return its status."""
    with _registry_lock:
        job = _registry.get(key)
    if job is not None:
        job.thread.join(timeout_s)
    return compare_status(key)
