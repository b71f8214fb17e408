"""Background scoring jobs for the dashboard, one per score cache key (see deft_core.background).

A job runs `score_data`, which stores the finished scores in the score cache with atomic writes.
A request whose scores are already cached therefore needs no job.
"""

from __future__ import annotations

import logging
import os

from deft_core import store
from deft_core.background import JobRegistry, JobStatus
from deft_core.encoding import resolve_template
from deft_core.loading import LoadedData
from deft_core.models import LoadedModel
from deft_core.progress import ProgressCallback
from deft_core.scoring import ScoreOptions, score_data, score_identity

logger = logging.getLogger(__name__)

SCORING = JobRegistry("scoring")


def score_request_key(data: LoadedData, loaded: LoadedModel, options: ScoreOptions) -> str:
    """Return the score cache key that `score_data(data, loaded, options)` would use.

    The key depends on the resolved template but not on the token ids, so no tokenising is needed.
    """
    template = resolve_template(loaded.tokenizer, options.template)
    return store.cache_key(score_identity(data, loaded, options, template, None))


def start_job(
    key: str, data: LoadedData, loaded: LoadedModel, options: ScoreOptions, description: str = ""
) -> JobStatus:
    """Start scoring `data` in the background unless the scores are cached or a job already runs."""

    def work(progress: ProgressCallback) -> str:
        result = score_data(data, loaded, options, progress=progress)
        if result.meta.get("cache_key") != key:
            logger.warning("job key %s differs from the cache key %s", key, result.meta["cache_key"])
        return ""

    def cached() -> JobStatus | None:
        if not store.cache_entry(key).is_file():
            return None
        count = len(data.pairs)
        return JobStatus(key, "done", description, done=count, total=count, pid=os.getpid())

    return SCORING.start(
        key, work, description, len(data.pairs), "tokenising and counting tokens", finished=cached
    )


def job_status(key: str) -> JobStatus | None:
    """Return the live or stored status of the scoring job for a cache key."""
    return SCORING.status(key)


def cancel_job(key: str) -> bool:
    """Ask a running scoring job to stop after its current batch; return False when none runs."""
    return SCORING.cancel(key)


def wait_for_job(key: str, timeout_s: float) -> JobStatus | None:
    """Block until the scoring job stops, or the timeout passes; return its status."""
    return SCORING.wait(key, timeout_s)
