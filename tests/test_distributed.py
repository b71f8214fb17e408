"""`deft score` and `deft train` under the real `accelerate launch` with 2 CPU processes (gloo).

accelerate 1.16 starts several processes on one machine only through its multi-GPU launcher
(torchrun): its --cpu flag starts one process, and its multi-CPU mode needs mpirun. The launch
config below is therefore a multi-GPU one. On CPU the launched deft processes join a gloo
process group (deft_core.distributed) because CUDA is hidden and ACCELERATE_USE_CPU is set.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deft_core import store
from deft_core.errors import DeftError
from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.scoring import ScoreOptions, score_data
from deft_core.training.command import execute
from deft_core.training.config import TrainConfig
from deft_core.training.loop import split_micro_batches
from deft_core.training.runs import create_run, list_runs

REPO = Path(__file__).resolve().parent.parent
ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH_TIMEOUT_S = 300

# 8 pairs of the sample: 5 to train on, 3 held out, so evaluation batches split 2 + 1.
# One pair per micro-batch and 2 micro-batches per optimizer step: each process runs one.
SMALL_RUN = dict(
    data="sample",
    limit=8,
    eval_size=3,
    max_length=128,
    batch_size=1,
    grad_accum=2,
    max_steps=2,
    eval_steps=100,
    save_steps=1,
    lora_r=4,
    lora_alpha=8,
    lora_dropout=0.1,
    dtype="float32",
    device="cpu",
    method="dpo",
)
RUN_FILES = (
    "config.yaml",
    "status.json",
    "metrics.jsonl",
    "train.log",
    "token_check.txt",
    "summary.json",
    "adapter/adapter_model.safetensors",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def launch_config(tmp_path) -> Path:
    """An accelerate config file for 2 processes on this machine, talking over the loopback."""
    path = tmp_path / "accelerate.yaml"
    path.write_text(
        "compute_environment: LOCAL_MACHINE\n"
        "distributed_type: MULTI_GPU\n"
        "num_machines: 1\n"
        "num_processes: 2\n"
        "machine_rank: 0\n"
        "main_process_ip: 127.0.0.1\n"
        f"main_process_port: {free_port()}\n"
        "gpu_ids: all\n"
        "mixed_precision: 'no'\n"
        "rdzv_backend: static\n"
        "same_network: true\n"
        "use_cpu: true\n",
        encoding="utf-8",
    )
    return path


def launch(config: Path, *deft_args: str) -> subprocess.CompletedProcess:
    """Run `accelerate launch --config_file CONFIG -m deft_core ARGS` with one thread per process."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "ACCELERATE_USE_CPU": "true",
        "GLOO_SOCKET_IFNAME": "lo",
        "HF_HUB_OFFLINE": "1",
    }
    command = [str(ACCELERATE), "launch", "--config_file", str(config), "-m", "deft_core", *deft_args]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
    )


def failure(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"


@contextmanager
def one_thread():
    """Compute in this process with one thread, as each launched process does."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def max_difference(first: Path, second: Path) -> float:
    left, right = load_file(str(first)), load_file(str(second))
    assert left.keys() == right.keys()
    return max((left[name] - right[name]).abs().max().item() for name in left)


def test_micro_batches_split_round_robin():
    assert split_micro_batches(4, 2, rank=0, world=2) == [0, 2]
    assert split_micro_batches(4, 2, rank=1, world=2) == [1, 3]
    assert split_micro_batches(3, 2, rank=0, world=1) == [0, 1, 2]
    with pytest.raises(DeftError, match="grad_accum 3 does not split evenly across 2 processes"):
        split_micro_batches(3, 2, rank=0, world=2)


def test_plain_run_imports_no_accelerate():
    code = (
        "import sys\n"
        "from deft_core import distributed, scoring\n"
        "distributed.setup('auto')\n"
        "print(distributed.world_size(), distributed.rank(), 'accelerate' in sys.modules)\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0", "False"]


@pytest.mark.model
def test_score_two_processes_equal_one(launch_config, fresh_home, tmp_path):
    out = tmp_path / "two.parquet"
    # 10 pairs are 20 sequences: 7 batches of 3, so the processes score 4 and 3 batches.
    result = launch(
        launch_config,
        "score",
        "sample",
        "--limit=10",
        "--max-length=128",
        "--batch-size=3",
        "--dtype=float32",
        "--device=cpu",
        f"--out={out}",
    )
    assert result.returncode == 0, failure(result)
    assert result.stdout.count("scored 10 pairs") == 1, "only the main process reports"
    assert result.stderr.count("read 10 rows") == 1, "only the main process reports the audit"
    table, meta = store.load_scores(out)

    data = load_pairs(DataOptions("sample", limit=10))
    loaded = load_model("bundled", "cpu", "float32")
    with one_thread():
        single = score_data(data, loaded, ScoreOptions(max_length=128, batch_size=3), use_cache=False)
    assert table.equals(single.table)
    differing = {key for key in single.meta if single.meta[key] != meta[key]}
    assert differing == {"created_at", "timing"}
    assert meta["timing"]["tokens"] == single.meta["timing"]["tokens"]

    cached, cached_meta = store.load_scores(store.cache_entry(single.meta["cache_key"]))
    assert cached.equals(single.table)
    assert cached_meta["cache_key"] == single.meta["cache_key"]


@pytest.mark.model
def test_train_two_processes_equal_one(launch_config, fresh_home):
    config = TrainConfig(**SMALL_RUN)

    # Two processes: a cancel request stops the run after step 1, and a resume finishes it.
    run = create_run(config)
    run.request_cancel()
    first = launch(launch_config, "train", "--resume", str(run.path))
    assert first.returncode == 0, failure(first)
    assert run.status()["state"] == "cancelled"
    assert run.latest_checkpoint().name == "step-1"
    run.cancel_path.unlink()
    second = launch(launch_config, "train", "--resume", str(run.path))
    assert second.returncode == 0, failure(second)
    assert second.stdout.count('"state": "completed"') == 1, "only the main process prints the summary"

    status = run.status()
    assert status["state"] == "completed"
    assert status["step"] == 2
    for name in RUN_FILES:
        assert (run.path / name).is_file(), f"{name} missing from the run folder"
    assert [record["step"] for record in run.metrics()] == [0, 1, 2]
    assert run.summary()["data"]["processes"] == 2
    assert [r.path for r in list_runs()] == [run.path], "the processes share one run folder"

    # One process with the same pairs per optimizer step: batch_size 1 x grad_accum 2.
    single = create_run(config)
    with one_thread():
        assert execute(single, config) == 0
    assert single.summary()["data"]["processes"] == 1
    step_one = Path("checkpoints", "step-1", "adapter", "adapter_model.safetensors")
    assert max_difference(run.path / step_one, single.path / step_one) <= 1e-6
    final = Path("adapter", "adapter_model.safetensors")
    assert max_difference(run.path / final, single.path / final) <= 1e-6
    for two, one in zip(run.metrics(), single.metrics(), strict=True):
        for key in ("train/loss", "train/grad_norm", "eval/loss", "eval/rewards/margins"):
            if key in one:
                assert two[key] == pytest.approx(one[key], abs=1e-6), f"{key} at step {one['step']}"


@pytest.mark.model
def test_train_rejects_uneven_grad_accum(launch_config, fresh_home, tmp_path):
    config = tmp_path / "uneven.yaml"
    config.write_text(json.dumps({**SMALL_RUN, "grad_accum": 3}), encoding="utf-8")
    result = launch(launch_config, "train", "--config", str(config))
    assert result.returncode != 0
    assert "grad_accum 3 does not split evenly across 2 processes" in result.stderr
    assert list_runs() == [], "no run folder is created for a rejected config"
