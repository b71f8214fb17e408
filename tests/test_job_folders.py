"""Job folders: finding them, their status when the process died, and launching guards."""

from __future__ import annotations

import pytest

from deft_core.errors import DeftError
from deft_core.job_folders import process_alive
from deft_core.training.config import TrainConfig
from deft_core.training.runs import create_run, launch, open_run, runs_root


def test_open_run_by_id_and_by_path(fresh_home):
    run = create_run(TrainConfig(name="find me"))
    assert open_run(run.run_id).path == run.path
    assert open_run(run.path).path == run.path


def test_open_run_names_the_problem(fresh_home, tmp_path):
    with pytest.raises(DeftError, match="run not found: nowhere is neither a folder nor a run id"):
        open_run("nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeftError, match=r"is not a run folder: it has no config\.yaml"):
        open_run(empty)


def test_dead_running_job_reads_failed(fresh_home):
    run = create_run(TrainConfig())
    assert run.status()["state"] == "pending"
    # pid 2**22 + 1 is above Linux's largest pid, so no process has it.
    run.set_status("running", pid=2**22 + 1)
    assert not process_alive(2**22 + 1)
    status = run.status()
    assert status["state"] == "failed"
    assert "run process ended without reporting" in status["error"]


def test_completed_run_not_relaunched(fresh_home):
    run = create_run(TrainConfig())
    run.set_status("completed")
    with pytest.raises(DeftError, match="already completed; start a new run instead"):
        launch(run)
    assert runs_root() == run.path.parent
