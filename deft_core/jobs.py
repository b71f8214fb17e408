"""Background scoring jobs for the dashboard: one thread per score cache key, progress in a JSON file.

A job runs `score_data` in a daemon thread of the serving process, so a browser tab may rerun,
reload or close without stopping it. Its status is written atomically to
`deft_home()/jobs/<cache key>.json` after every batch, and any session that requests the same
cache key attaches to the running job instead of starting a second one. Jobs for different keys
wait for one another (MAX_CONCURRENT_JOBS), because each one already uses every CPU core.
The finished scores go through the score cache, whose writes are atomic.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from deft_core import store
from deft_core.encoding import resolve_template
from deft_core.errors import DeftError
from deft_core.home import deft_home
from deft_core.loading import LoadedData
from deft_core.models import LoadedModel
from deft_core.progress import Progress
from deft_core.scoring import ScoreOptions, score_data, score_identity
from deft_core.sources import atomic_path

logger = logging.getLogger(__name__)

MAX_CONCURRENT_JOBS = 1
# Seconds between two status writes while a job runs; the final state is always written.
WRITE_INTERVAL_S = 0.5
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")

_registry: dict[str, ScoringJob] = {}
_registry_lock = threading.Lock()
_slots = threading.Semaphore(MAX_CONCURRENT_JOBS)


class JobCancelled(Exception):
    """Raised inside the progress callback to stop a cancelled job between two batches."""


@dataclass
class JobStatus:
    """The state of one scoring job as stored in its JSON file.

    `state` is one of: queued, running, done, failed, cancelled, interrupted (the serving
    process stopped while the job ran).
    """

    key: str
    state: str
    description: str = ""
    stage: str = "waiting"
    done: float = 0.0
    total: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    error: str = ""
    pid: int = 0
    started_at: str = ""
    updated_at: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


def jobs_folder() -> Path:
    folder = deft_home() / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def status_path(key: str) -> Path:
    return jobs_folder() / f"{key}.json"


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_status(status: JobStatus) -> None:
    status.updated_at = now_text()
    with atomic_path(status_path(status.key)) as temporary:
        temporary.write_text(json.dumps(asdict(status), indent=1), encoding="utf-8")


def read_status(key: str) -> JobStatus | None:
    """Read a job's status file; None when there is none or it cannot be parsed."""
    try:
        data = json.loads(status_path(key).read_text(encoding="utf-8"))
        return JobStatus(**data)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError) as error:
        logger.warning("ignoring unreadable job status %s: %s", status_path(key), error)
        return None


def score_request_key(data: LoadedData, loaded: LoadedModel, options: ScoreOptions) -> str:
    """Return the score cache key that `score_data(data, loaded, options)` would use.

    The key depends on the resolved template but not on the token ids, so no tokenising is needed.
    """
    template = resolve_template(loaded.tokenizer, options.template)
    return store.cache_key(score_identity(data, loaded, options, template, None))


class ScoringJob:
    """One background run of score_data that reports progress and can be cancelled."""

    def __init__(
        self, key: str, data: LoadedData, loaded: LoadedModel, options: ScoreOptions, description: str
    ) -> None:
        self.key = key
        self.data = data
        self.loaded = loaded
        self.options = options
        self.cancel_event = threading.Event()
        self.status = JobStatus(
            key=key,
            state="queued",
            description=description,
            total=len(data.pairs),
            pid=os.getpid(),
            started_at=now_text(),
        )
        self.last_write = 0.0
        self.thread = threading.Thread(target=self.run, name=f"deft-score-{key}", daemon=True)

    def report(self, progress: Progress) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled
        self.status.stage = progress.stage
        self.status.done = progress.done
        self.status.total = progress.total
        self.status.tokens = progress.tokens
        self.status.elapsed_s = round(progress.elapsed_s, 2)
        self.status.eta_s = round(progress.eta_s, 1) if progress.eta_s is not None else None
        if time.monotonic() - self.last_write >= WRITE_INTERVAL_S:
            self.last_write = time.monotonic()
            write_status(self.status)

    def run(self) -> None:
        with _slots:
            if self.cancel_event.is_set():
                self.finish("cancelled")
                return
            self.status.state = "running"
            self.status.stage = "tokenising and counting tokens"
            write_status(self.status)
            logger.info("scoring job %s started: %s", self.key, self.status.description)
            try:
                result = score_data(self.data, self.loaded, self.options, progress=self.report)
            except JobCancelled:
                logger.info("scoring job %s cancelled after %.0f pairs", self.key, self.status.done)
                self.finish("cancelled")
            except DeftError as error:
                logger.warning("scoring job %s failed: %s", self.key, error)
                self.finish("failed", str(error))
            except Exception as error:  # a job thread must always record why it stopped
                logger.exception("scoring job %s failed", self.key)
                self.finish("failed", f"{type(error).__name__}: {error}")
            else:
                if result.meta.get("cache_key") != self.key:
                    logger.warning(
                        "job key %s differs from the cache key %s", self.key, result.meta["cache_key"]
                    )
                self.status.done = self.status.total
                self.finish("done")

    def finish(self, state: str, error: str = "") -> None:
        self.status.state = state
        self.status.error = error
        self.status.eta_s = None
        write_status(self.status)
        with _registry_lock:
            if _registry.get(self.key) is self:
                del _registry[self.key]


def start_job(
    key: str, data: LoadedData, loaded: LoadedModel, options: ScoreOptions, description: str = ""
) -> JobStatus:
    """Start scoring `data` in the background unless the scores are cached or a job already runs."""
    with _registry_lock:
        running = _registry.get(key)
        if running is not None:
            return running.status
        if store.cache_entry(key).is_file():
            status = JobStatus(key=key, state="done", description=description, pid=os.getpid())
            status.done = status.total = len(data.pairs)
            return status
        job = ScoringJob(key, data, loaded, options, description)
        _registry[key] = job
        write_status(job.status)
        job.thread.start()
        return job.status


def job_status(key: str) -> JobStatus | None:
    """Return the live status of a job in this process, or the stored status of an older one.

    A stored job that claims to run but has no thread in this process was stopped with its
    process, so it is returned as "interrupted".
    """
    with _registry_lock:
        job = _registry.get(key)
    if job is not None:
        return job.status
    status = read_status(key)
    if status is not None and status.active:
        status.state = "interrupted"
        status.error = "the dashboard server stopped while this job ran; start it again"
    return status


def cancel_job(key: str) -> bool:
    """Ask a running job to stop after its current batch; return False when none runs."""
    with _registry_lock:
        job = _registry.get(key)
    if job is None:
        return False
    job.cancel_event.set()
    logger.info("scoring job %s: cancel requested", key)
    return True


def wait_for_job(key: str, timeout_s: float) -> JobStatus | None:
    """Block until the job leaves the queued and running states, or the timeout passes."""
    with _registry_lock:
        job = _registry.get(key)
    if job is not None:
        job.thread.join(timeout_s)
    return job_status(key)
