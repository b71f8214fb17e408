"""Background comparisons for the dashboard, one per request key (see deft_core.background).

A job runs compare_models and save_comparison. A finished status names the saved results.json,
so the same request later opens that result instead of generating again. A done job whose
results file is gone reads as no job.
"""

from __future__ import annotations

from pathlib import Path

from deft_core.background import JobRegistry, JobStatus
from deft_core.compare.comparison import CompareRequest, compare_models, save_comparison
from deft_core.progress import ProgressCallback

COMPARISONS = JobRegistry("comparison", file_prefix="compare-")


def compare_status(key: str) -> JobStatus | None:
    """Return the live or stored status of a comparison; None when none ran or its results are gone."""
    status = COMPARISONS.status(key)
    if status is not None and status.state == "done" and not Path(status.result).is_file():
        return None
    return status


def start_compare(request: CompareRequest, description: str = "") -> JobStatus:
    """Start a comparison in the background unless one for the same request runs or is saved."""
    key = request.key()

    def work(progress: ProgressCallback) -> str:
        return str(save_comparison(compare_models(request, progress=progress)))

    def saved() -> JobStatus | None:
        stored = COMPARISONS.read_status(key)
        if stored is not None and stored.state == "done" and Path(stored.result).is_file():
            return stored
        return None

    first_stage = "loading the data and Q_diff"
    return COMPARISONS.start(key, work, description, first_stage=first_stage, finished=saved)


def cancel_compare(key: str) -> bool:
    """Ask a running comparison to stop after its current batch; return False when none runs."""
    return COMPARISONS.cancel(key)


def wait_for_compare(key: str, timeout_s: float) -> JobStatus | None:
    """Block until the comparison stops, or the timeout passes; return its status."""
    COMPARISONS.wait(key, timeout_s)
    return compare_status(key)
