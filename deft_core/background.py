"""Background jobs for the dashboard: one daemon thread per request key, progress in a JSON file.

A job runs in a daemon thread of the serving process, so a browser tab may rerun, reload or close
without stopping it. Its status is written atomically to `deft_home()/jobs/<prefix><key>.json`
when its stage or state changes and at most every WRITE_INTERVAL_S seconds in between. A
session that requests the same key attaches to the running job instead of starting a second
one. Jobs of one registry wait for one another, because each one already uses every CPU core.
Scoring (deft_core.jobs) and comparison (deft_core.compare.jobs) jobs are the two registries.
NOTE: jobs of different registries may still run at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from deft_core.errors import DeftError
from deft_core.home import deft_home
from deft_core.progress import Progress, ProgressCallback
from deft_core.sources import atomic_path

logger = logging.getLogger(__name__)

# Seconds between two status writes while a job runs; stage and state changes are always written.
WRITE_INTERVAL_S = 0.5

# The work of a job: it reports progress through the callback and returns its result's path or "".
Work = Callable[[ProgressCallback], str]


class JobCancelled(Exception):
    """Raised inside the progress callback to stop a cancelled job between two batches."""


@dataclass
class JobStatus:
    """The state of one job as stored in its JSON file.

    `state` is one of: queued, running, done, failed, cancelled, interrupted (the serving
    process stopped while the job ran).
    """

    key: str
    state: str
    description: str = ""
    stage: str = "waiting"
    done: float = 0.0
    total: int = 0
    unit: str = ""
    tokens: int = 0
    tokens_per_s: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    error: str = ""
    result: str = ""  # path of the saved result once done, for jobs that save one
    pid: int = 0
    started_at: str = ""
    updated_at: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def jobs_folder() -> Path:
    folder = deft_home() / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Job:
    """One background run of a registry's work that reports progress and can be cancelled."""

    def __init__(self, registry: JobRegistry, status: JobStatus, work: Work, first_stage: str) -> None:
        self.registry = registry
        self.status = status
        self.work = work
        self.first_stage = first_stage
        self.cancel_event = threading.Event()
        self.started = time.monotonic()
        self.last_write = 0.0
        self.thread = threading.Thread(
            target=self.run, name=f"deft-{registry.kind}-{status.key}", daemon=True
        )

    def report(self, progress: Progress) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled
        status = self.status
        changed = progress.stage != status.stage
        status.stage = progress.stage
        status.done = progress.done
        status.total = progress.total
        status.unit = progress.unit
        status.tokens = progress.tokens
        status.tokens_per_s = round(progress.tokens_per_s, 1)
        status.eta_s = round(progress.eta_s, 1) if progress.eta_s is not None else None
        status.elapsed_s = round(time.monotonic() - self.started, 1)
        if changed or time.monotonic() - self.last_write >= WRITE_INTERVAL_S:
            self.last_write = time.monotonic()
            self.registry.write_status(status)

    def run(self) -> None:
        registry, key = self.registry, self.status.key
        with registry.slots:
            if self.cancel_event.is_set():
                self.finish("cancelled")
                return
            self.status.state = "running"
            self.status.stage = self.first_stage
            registry.write_status(self.status)
            logger.info("%s job %s started: %s", registry.kind, key, self.status.description)
            try:
                result = self.work(self.report)
            except JobCancelled:
                logger.info("%s job %s cancelled at %s", registry.kind, key, self.status.stage)
                self.finish("cancelled")
            except DeftError as error:
                logger.warning("%s job %s failed: %s", registry.kind, key, error)
                self.finish("failed", str(error))
            except Exception as error:  # a job thread must always record why it stopped
                logger.exception("%s job %s failed", registry.kind, key)
                self.finish("failed", f"{type(error).__name__}: {error}")
            else:
                self.status.result = result
                self.status.done = self.status.total
                self.finish("done")

    def finish(self, state: str, error: str = "") -> None:
        self.status.state = state
        self.status.error = error
        self.status.eta_s = None
        self.status.elapsed_s = round(time.monotonic() - self.started, 1)
        self.registry.write_status(self.status)
        self.registry.forget(self)


class JobRegistry:
    """The background jobs of one kind in this process, and the status files of earlier ones."""

    def __init__(self, kind: str, file_prefix: str = "", concurrent: int = 1) -> None:
        self.kind = kind
        self.file_prefix = file_prefix
        self.slots = threading.Semaphore(concurrent)
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}

    def status_path(self, key: str) -> Path:
        return jobs_folder() / f"{self.file_prefix}{key}.json"

    def write_status(self, status: JobStatus) -> None:
        status.updated_at = now_text()
        with atomic_path(self.status_path(status.key)) as temporary:
            temporary.write_text(json.dumps(asdict(status), indent=1), encoding="utf-8")

    def read_status(self, key: str) -> JobStatus | None:
        """Read a job's status file; None when there is none or it cannot be parsed."""
        path = self.status_path(key)
        try:
            return JobStatus(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, TypeError) as error:
            logger.warning("ignoring unreadable %s job status %s: %s", self.kind, path, error)
            return None

    def running(self, key: str) -> Job | None:
        with self.lock:
            return self.jobs.get(key)

    def start(
        self,
        key: str,
        work: Work,
        description: str = "",
        total: int = 0,
        first_stage: str = "starting",
        finished: Callable[[], JobStatus | None] | None = None,
    ) -> JobStatus:
        """Start `work` in the background unless a job for the key runs or `finished()` has a result.

        `finished` looks for an earlier result of the same request (a cache entry, a saved file)
        and returns its status, or None when the work has to run.
        """
        with self.lock:
            job = self.jobs.get(key)
            if job is not None:
                return job.status
            if finished is not None and (done := finished()) is not None:
                return done
            status = JobStatus(
                key=key,
                state="queued",
                description=description,
                total=total,
                pid=os.getpid(),
                started_at=now_text(),
            )
            job = Job(self, status, work, first_stage)
            self.jobs[key] = job
            self.write_status(status)
            job.thread.start()
            return status

    def status(self, key: str) -> JobStatus | None:
        """Return the live status of a job in this process, or the stored status of an earlier one.

        A stored job that claims to run but has no thread in this process stopped with its
        process, so it is returned as "interrupted".
        """
        job = self.running(key)
        if job is not None:
            return job.status
        status = self.read_status(key)
        if status is not None and status.active:
            status.state = "interrupted"
            status.error = f"the dashboard server stopped while this {self.kind} job ran; start it again"
        return status

    def cancel(self, key: str) -> bool:
        """Ask a running job to stop after its current batch; return False when none runs."""
        job = self.running(key)
        if job is None:
            return False
        job.cancel_event.set()
        logger.info("%s job %s: cancel requested", self.kind, key)
        return True

    def wait(self, key: str, timeout_s: float) -> JobStatus | None:
        """Block until the job leaves the queued and running states, or the timeout passes."""
        job = self.running(key)
        if job is not None:
            job.thread.join(timeout_s)
        return self.status(key)

    def forget(self, job: Job) -> None:
        with self.lock:
            if self.jobs.get(job.status.key) is job:
                del self.jobs[job.status.key]
