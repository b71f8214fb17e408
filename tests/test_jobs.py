"""Background scoring jobs: they finish into the score cache, run side by side, cancel and recover."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deft_core import jobs, store
from deft_core.loading import DataOptions, load_pairs
from deft_core.scoring import ScoreOptions, score_data

pytestmark = pytest.mark.model


def sample(limit: int):
    return load_pairs(DataOptions("sample", limit=limit))


def test_request_key_matches_score_data(bundled, fresh_home):
    data = sample(4)
    options = ScoreOptions(batch_size=8)
    key = jobs.score_request_key(data, bundled, options)
    result = score_data(sample(4), bundled, options)
    assert result.meta["cache_key"] == key


def test_job_scores_into_cache(bundled, fresh_home):
    data, options = sample(6), ScoreOptions()
    key = jobs.score_request_key(data, bundled, options)
    status = jobs.start_job(key, data, bundled, options, "six pairs")
    assert status.state in ("queued", "running")
    assert jobs.start_job(key, data, bundled, options).key == key  # attaches, no second job
    final = jobs.wait_for_job(key, timeout_s=120)
    assert final.state == "done"
    assert final.done == final.total == 6
    assert store.cache_entry(key).is_file()
    saved = json.loads(jobs.SCORING.status_path(key).read_text())
    assert saved["state"] == "done"
    assert jobs.start_job(key, data, bundled, options).state == "done"


def test_two_jobs_keep_their_own_results(bundled, fresh_home):
    data = sample(5)
    first, second = ScoreOptions(reward_form="logprob"), ScoreOptions(reward_form="prob")
    keys = [jobs.score_request_key(data, bundled, o) for o in (first, second)]
    assert keys[0] != keys[1]
    for key, options in zip(keys, (first, second), strict=True):
        jobs.start_job(key, sample(5), bundled, options)
    for key in keys:
        assert jobs.wait_for_job(key, timeout_s=120).state == "done"
    for key, options in zip(keys, (first, second), strict=True):
        cached, _ = store.cached_scores(key)
        direct = score_data(sample(5), bundled, options, use_cache=False)
        np.testing.assert_allclose(cached["score"], direct.table["score"], rtol=1e-4, atol=1e-6)


def test_cancelled_job_leaves_no_cache(bundled, fresh_home):
    data, options = sample(40), ScoreOptions(batch_size=2)
    key = jobs.score_request_key(data, bundled, options)
    jobs.start_job(key, data, bundled, options)
    assert jobs.cancel_job(key)
    final = jobs.wait_for_job(key, timeout_s=120)
    assert final.state == "cancelled"
    assert not store.cache_entry(key).is_file()
    assert not jobs.cancel_job(key)


def test_stale_running_status_reads_interrupted(fresh_home):
    status = jobs.JobStatus(key="abc", state="running", total=10, done=3, pid=os.getpid())
    jobs.SCORING.write_status(status)
    read = jobs.job_status("abc")
    assert read.state == "interrupted"
    assert "start it again" in read.error


def test_unreadable_status_is_ignored(fresh_home):
    jobs.SCORING.status_path("bad").write_text("{not json")
    assert jobs.job_status("bad") is None
