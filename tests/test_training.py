"""Guided LoRA training on the real bundled model: config, split, smoke run, cancel, resume, failures."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest
import torch

from deft_core.cli import main
from deft_core.errors import DeftError
from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.scoring import ScoreOptions, score_data
from deft_core.store import save_scores
from deft_core.training import loop
from deft_core.training.command import add_train_arguments, collect_overrides, execute
from deft_core.training.config import DEFAULT_OMEGA, TrainConfig, load_config
from deft_core.training.data import load_split
from deft_core.training.runs import create_run, launch, list_runs, open_run

REPO = Path(__file__).resolve().parent.parent
# Training presets; configs/ablation-*.yaml are ablation configs, loaded by tests/test_ablation.py.
PRESETS = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("ablation-"))

# A run small enough for 2 CPU cores: 6 pairs of the sample, 128 tokens, one pair per step.
TINY = dict(
    data="sample",
    limit=6,
    eval_size=2,
    max_length=128,
    batch_size=1,
    grad_accum=1,
    max_steps=2,
    eval_steps=100,
    save_steps=100,
    lora_r=4,
    lora_alpha=8,
    lora_dropout=0.0,
)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_preset_loads_and_validates(preset):
    config = load_config(preset)
    assert config.method in DEFAULT_OMEGA
    assert config.guidance_weight > 0
    if config.scores:
        assert Path(config.scores).is_absolute()


def test_presets_exist():
    names = {p.name for p in PRESETS}
    assert "deft-dpo.yaml" in names
    assert {"sample-dpo.yaml", "sample-sft.yaml", "sample-pro.yaml"} <= names


def test_config_lists_every_problem():
    with pytest.raises(DeftError) as error:
        TrainConfig(method="ipo", beta=0, lora_dropout=1.5, selection="top", scores=None)
    message = str(error.value)
    assert "method must be one of dpo, sft, pro, got 'ipo'" in message
    assert "beta must be > 0" in message
    assert "lora_dropout must be in [0, 1)" in message
    assert "selection top needs a score file" in message


def test_config_file_errors(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("method: dpo\n  beta: [1\n")
    with pytest.raises(DeftError, match="invalid YAML"):
        load_config(bad_yaml)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("method: dpo\nlearning_rat: 0.1\n")
    with pytest.raises(DeftError, match=r"unknown setting learning_rat; did you mean learning_rate\?"):
        load_config(unknown)
    with pytest.raises(DeftError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    wrong_type = tmp_path / "type.yaml"
    wrong_type.write_text("lora_r: eight\n")
    with pytest.raises(DeftError, match="lora_r must be a whole number, got 'eight'"):
        load_config(wrong_type)


def test_cli_rejects_missing_score_file(tmp_path, capsys, fresh_home):
    config = tmp_path / "top.yaml"
    config.write_text("data: sample\nselection: top\nselection_value: 5\nscores: none.parquet\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "score file not found" in capsys.readouterr().err
    assert list_runs() == []


def test_cli_rejects_unknown_method(capsys, fresh_home):
    assert main(["train", "--config", str(REPO / "configs" / "sample-dpo.yaml"), "--method", "kto"]) == 2
    assert "method must be one of dpo, sft, pro, got 'kto'" in capsys.readouterr().err


def test_held_out_split_before_selection():
    config = TrainConfig(data="sample", eval_size=20, selection="random", selection_value=10, seed=3)
    split = load_split(config)
    again = load_split(TrainConfig(data="sample", eval_size=20, selection="full", seed=3))
    assert [p.id for p in split.eval] == [p.id for p in again.eval]
    assert not {p.id for p in split.eval} & {p.id for p in split.train}
    assert len(split.train) == 24  # 10% of the 240 pairs left after holding out 20


def test_lora_smoke_changes_adapter_only(fresh_home):
    config = TrainConfig(**TINY, method="dpo", omega=DEFAULT_OMEGA["dpo"])
    run = create_run(config)
    session = loop.build_session(config, run)
    named = dict(session.model.named_parameters())
    lora_names = [n for n, p in named.items() if p.requires_grad]
    base_name = next(n for n in named if "q_proj.base_layer.weight" in n)
    before_lora = {n: named[n].detach().clone() for n in lora_names}
    before_base = named[base_name].detach().clone()
    for step in range(2):
        metrics = loop.optimizer_step(session, step)
        assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert any(not torch.equal(before_lora[n], named[n]) for n in lora_names)
    assert torch.equal(before_base, named[base_name])
    assert all(named[n].dtype == torch.float32 for n in lora_names)
    assert "no BOS/EOS problems found" in (run.path / "token_check.txt").read_text()

    # The merged export computes what the policy computes, and the run keeps its adapter.
    loop.export_merged(session)
    merged = load_model(str(run.path / "merged"), dtype="float32").model
    ids = torch.tensor([session.train.encoded[0].prompt_ids])
    session.model.eval()
    with torch.no_grad():
        expected = session.model(input_ids=ids).logits.float()
        actual = merged(input_ids=ids).logits
    # The policy runs in bf16 and the merged copy loads in float32, so compare loosely.
    assert (actual - expected).abs().mean() < 0.25
    assert (actual.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.9
    assert any(p.requires_grad for p in session.model.parameters())


def test_cancel_then_resume_continues(fresh_home, capsys):
    config = TrainConfig(**{**TINY, "max_steps": 3}, method="pro")
    run = create_run(config)
    run.request_cancel()  # seen after the first optimizer step
    assert execute(run, config) == 0
    assert run.status()["state"] == "cancelled"
    assert run.latest_checkpoint().name == "step-1"
    printed = capsys.readouterr()
    assert json.loads(printed.out)["eval_before"]["step"] == 0
    assert f"continue with `deft train --resume {run.run_id}`" in printed.err

    # The cancel file that stopped the run is still in the folder. Resuming deletes it, so the run
    # does not stop again.
    assert run.cancel_path.exists()
    assert main(["train", "--resume", str(run.path)]) == 0
    # Without a terminal, progress is one line per step; the resumed run counts its 2 steps left.
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if line.startswith("training from step 1:")]
    assert [line.split(",")[0] for line in progress] == [
        "training from step 1: 1 of 2 steps",
        "training from step 1: 2 of 2 steps",
    ]
    status = run.status()
    assert status["state"] == "completed"
    assert status["step"] == 3
    steps = [record["step"] for record in run.metrics()]
    assert steps == [0, 1, 2, 3]
    summary = run.summary()
    assert summary["step"] == 3
    assert (run.path / "adapter" / "adapter_model.safetensors").is_file()
    assert "eval/rewards/accuracies" in summary["eval_last"]
    assert f"deft compare {run.run_id}" in err

    # A completed run is not trained again.
    assert main(["train", "--resume", str(run.path)]) == 2
    assert "already completed (step 3)" in capsys.readouterr().err
    assert [record["step"] for record in run.metrics()] == [0, 1, 2, 3]


def test_crash_marks_run_failed(fresh_home, monkeypatch):
    config = TrainConfig(**TINY)
    run = create_run(config)

    def crash(*args):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(loop, "build_session", crash)
    assert execute(run, config) == 1
    status = open_run(run.run_id).status()
    assert status["state"] == "failed"
    assert "simulated crash" in status["error"]
    assert "simulated crash" in run.log_tail()


def test_launched_run_with_missing_data_fails(fresh_home, tmp_path):
    config = TrainConfig(**{**TINY, "data": str(tmp_path / "absent.jsonl")})
    run = create_run(config)
    process = launch(run)
    assert process.wait(timeout=120) == 2
    time.sleep(0.1)
    status = run.status()
    assert status["state"] == "failed"
    assert "absent.jsonl" in status["error"]


def test_visited_pairs_follow_the_schedule():
    """Reference log-probs are computed only for the pairs the step budget reaches."""
    config = TrainConfig(data="sample", batch_size=2, grad_accum=2, seed=5)
    visited = loop.visited_pairs(config, 20, steps=2)
    expected = {i for micro_step in range(4) for i in loop.micro_batch_indices(20, 2, micro_step, 5)}
    assert set(visited.nonzero()[0].tolist()) == expected
    assert visited.sum() == 8
    assert loop.visited_pairs(config, 6, steps=2).all()


def test_held_out_rewards_start_at_zero(fresh_home, bundled):
    """Held-out references are computed in the run even when the score file could supply them."""
    data = load_pairs(DataOptions("sample", limit=TINY["limit"]))
    result = score_data(data, bundled, ScoreOptions(max_length=TINY["max_length"]))
    scores = save_scores(fresh_home / "tiny.parquet", result.table, result.meta)
    config = TrainConfig(**{**TINY, "eval_size": 3}, scores=str(scores), selection="top", selection_value=50)
    session = loop.build_session(config, create_run(config))
    metrics = loop.evaluate(session)
    assert metrics["eval/rewards/chosen"] == 0.0
    assert metrics["eval/rewards/rejected"] == 0.0


def test_columns_flag_takes_both_forms():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    config = str(REPO / "configs" / "sample-dpo.yaml")
    pairs = parser.parse_args(["--config", config, "--columns", "prompt=question,chosen=good"])
    assert collect_overrides(pairs)["columns"] == {"prompt": "question", "chosen": "good"}
    as_json = parser.parse_args(["--config", config, "--columns", '{"prompt": "q"}'])
    assert collect_overrides(as_json)["columns"] == {"prompt": "q"}
