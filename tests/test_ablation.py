"""The DEFT ablation: its config, the variant plan, a tiny real run with cancel and resume, and its page."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from deft_core.ablation import results as tables
from deft_core.ablation.config import AblationConfig, load_ablation_config, variant_configs
from deft_core.ablation.folder import create_ablation, launch_ablation, progress_summary
from deft_core.ablation.runner import execute_ablation
from deft_core.cli import main
from deft_core.errors import DeftError
from deft_core.loading import DataOptions, load_pairs
from deft_core.scoring import ScoreOptions, score_data
from deft_core.store import save_scores

REPO = Path(__file__).resolve().parent.parent
PAGE = str(REPO / "pages" / "ablation.py")
PRESETS = sorted((REPO / "configs").glob("ablation-*.yaml"))
VARIANTS = ["top-guided", "top-plain", "random-guided", "random-plain", "full-guided", "full-plain"]
# Settings the variants must share for the comparison to be fair.
SHARED_FIELDS = (
    "data",
    "scores",
    "model",
    "method",
    "seed",
    "max_steps",
    "eval_size",
    "max_length",
    "batch_size",
    "grad_accum",
    "learning_rate",
    "beta",
    "template",
    "lora_r",
    "limit",
)

# A tiny ablation for 2 CPU cores: 10 sample pairs, 2 held out, 20% of 8 = 2 pairs, one pair per step,
# one step per variant, 2 prompts with 4 new tokens each.
LIMIT = 10
TINY = dict(
    data="sample",
    k_percent=20,
    eval_size=2,
    max_steps=1,
    batch_size=1,
    grad_accum=1,
    max_length=96,
    eval_limit=2,
    max_new_tokens=4,
    generation_batch_size=2,
    train_settings={"limit": LIMIT, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
)


def test_config_lists_every_problem():
    with pytest.raises(DeftError) as error:
        AblationConfig(
            scores="s.parquet", method="ipo", k_percent=100, max_steps=0, omega=0.0, top_p=1.5, eval_limit=0
        )
    message = str(error.value)
    assert "method must be one of dpo, sft, pro, got 'ipo'" in message
    assert "k_percent must be a percentage in (0, 100), got 100" in message
    assert "max_steps must be at least 1, got 0" in message
    assert "omega must be a finite number > 0" in message
    assert "top_p must be in (0, 1], got 1.5" in message
    assert "eval_limit must be at least 1 or empty, got 0" in message


def test_config_requires_score_file():
    with pytest.raises(DeftError, match="scores is required"):
        AblationConfig(data="sample")


def test_config_checks_train_settings():
    with pytest.raises(DeftError) as error:
        AblationConfig(scores="s.parquet", train_settings={"seed": 1, "selection": "top", "lora_rank": 4})
    message = str(error.value)
    assert "unknown setting(s) lora_rank" in message
    assert "train_settings cannot set seed, selection" in message
    with pytest.raises(DeftError, match="lora_dropout must be in"):
        AblationConfig(scores="s.parquet", train_settings={"lora_dropout": 2.0})
    with pytest.raises(DeftError, match="learning_rate must be > 0"):
        AblationConfig(scores="s.parquet", learning_rate=0)


def test_config_file_errors(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("scores: s.parquet\nk_percnt: 5\n")
    with pytest.raises(DeftError, match=r"unknown setting k_percnt; did you mean k_percent\?"):
        load_ablation_config(unknown)
    bad = tmp_path / "bad.yaml"
    bad.write_text("scores: [s\n")
    with pytest.raises(DeftError, match=r"bad\.yaml:.*invalid YAML"):
        load_ablation_config(bad)
    wrong_type = tmp_path / "type.yaml"
    wrong_type.write_text("scores: s.parquet\nmax_steps: ten\n")
    with pytest.raises(DeftError, match="max_steps must be a whole number, got 'ten'"):
        load_ablation_config(wrong_type)
    with pytest.raises(DeftError, match="config file not found"):
        load_ablation_config(tmp_path / "absent.yaml")


def test_config_paths_resolve_against_file(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "a.yaml").write_text("data: sample\nscores: ../out/s.parquet\n")
    config = load_ablation_config(folder / "a.yaml", {"max_steps": 3})
    assert config.scores == str((tmp_path / "out" / "s.parquet").resolve())
    assert config.data == "sample"
    assert config.max_steps == 3


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_preset_loads(preset):
    config = load_ablation_config(preset)
    assert Path(config.scores).is_absolute()
    assert len(variant_configs(config, "chat")) == 6


def test_presets_exist():
    assert {p.name for p in PRESETS} == {"ablation-hh.yaml", "ablation-sample.yaml"}


def test_variant_plan_differs_only_in_subset_and_omega():
    config = AblationConfig(scores="s.parquet", k_percent=5, omega=3.0, max_steps=7, seed=11, eval_size=40)
    variants = variant_configs(config, "raw")
    assert [v.name for v in variants] == VARIANTS
    plan = {v.name: (v.train.selection, v.train.selection_value, v.train.omega) for v in variants}
    assert plan == {
        "top-guided": ("top", 5.0, 3.0),
        "top-plain": ("top", 5.0, 0.0),
        "random-guided": ("random", 5.0, 3.0),
        "random-plain": ("random", 5.0, 0.0),
        "full-guided": ("full", 100.0, 3.0),
        "full-plain": ("full", 100.0, 0.0),
    }
    first = variants[0].train.to_dict()
    for variant in variants[1:]:
        values = variant.train.to_dict()
        for name in SHARED_FIELDS:
            assert values[name] == first[name], f"{variant.name} differs in {name}"
    assert first["seed"] == 11
    assert first["max_steps"] == 7
    assert first["eval_size"] == 40
    assert first["template"] == "raw"
    assert first["eval_steps"] == 7


def test_variant_plan_default_omega():
    variants = variant_configs(AblationConfig(scores="s.parquet", method="pro"), "chat")
    assert [v.train.guidance_weight for v in variants] == [5.0, 0.0, 5.0, 0.0, 5.0, 0.0]


def test_standard_error_matches_formula():
    assert tables.standard_error(0.5, 64) == pytest.approx(0.0625)
    assert tables.standard_error(None, 64) is None
    assert tables.standard_error(0.5, 0) is None


def test_table_and_csv_keep_every_row():
    rows = [
        tables.base_row({"preference_accuracy": 0.5, "bleu": 1.25}, 3.0),
        {"variant": "top-guided", "train_pairs": 5, "preference_accuracy": 0.75},
    ]
    frame = pd.read_csv(io.StringIO(tables.csv_text(rows)))
    assert frame["variant"].tolist() == ["base", "top-guided"]
    assert list(frame.columns) == list(tables.COLUMNS)
    text = tables.table_text(rows)
    assert "top-guided" in text
    assert "0.7500" in text


def test_cli_rejects_missing_score_file(tmp_path, capsys, fresh_home):
    code = main(["ablate", "--data", "sample", "--scores", str(tmp_path / "none.parquet")])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "score file not found" in error
    assert not (fresh_home / "ablations").exists() or not any((fresh_home / "ablations").iterdir())


def test_cli_rejects_bad_value(capsys, fresh_home):
    code = main(["ablate", "--config", str(REPO / "configs" / "ablation-sample.yaml"), "--k-percent", "0"])
    assert code == 2
    assert "k_percent must be a percentage in (0, 100), got 0" in capsys.readouterr().err


def test_cli_resume_rejects_overrides(capsys, fresh_home, tmp_path):
    ablation = create_ablation(AblationConfig(scores=str(tmp_path / "s.parquet")))
    assert main(["ablate", "--resume", ablation.ablation_id, "--max-steps", "3"]) == 2
    assert "flags that change it are not allowed" in capsys.readouterr().err
    assert main(["ablate", "--resume", "no-such-ablation"]) == 2
    assert "ablation not found: no-such-ablation" in capsys.readouterr().err


def test_launched_ablation_with_bad_score_file_fails(fresh_home, tmp_path):
    scores = tmp_path / "s.parquet"
    scores.write_bytes(b"not parquet")
    ablation = create_ablation(AblationConfig(data="sample", scores=str(scores)))
    process = launch_ablation(ablation)
    assert process.wait(timeout=120) == 2
    status = ablation.status()
    assert status["state"] == "failed"
    assert "s.parquet: not a readable Parquet file" in status["error"]
    assert "not a readable Parquet file" in (ablation.path / "process.log").read_text()
    fraction, line = progress_summary(ablation)
    assert fraction == 0
    assert line.startswith("failed: 0 of 7")


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory, bundled):
    """A deft home with the first 10 sample pairs scored (max_length 96) and one finished ablation.

    The ablation is cancelled when top-plain starts training, then resumed through the CLI, so
    building it checks cancel and resume. The tests below read what it left behind.
    """
    shared_models = Path(os.environ["DEFT_HOME"]) / "models"
    home = tmp_path_factory.mktemp("ablation-home")
    (home / "models").symlink_to(shared_models)
    previous = os.environ["DEFT_HOME"]
    os.environ["DEFT_HOME"] = str(home)
    result = score_data(load_pairs(DataOptions("sample", limit=LIMIT)), bundled, ScoreOptions(max_length=96))
    scores = save_scores(home / "sample-10.parquet", result.table, result.meta)
    ablation = create_ablation(AblationConfig(**TINY, scores=str(scores), name="tiny"))

    stages: list[str] = []

    def cancel_at_top_plain(progress) -> None:
        stages.append(progress.stage)
        if progress.stage.startswith("top-plain: training"):
            ablation.request_cancel()

    first_code = execute_ablation(ablation, cancel_at_top_plain)
    first = {
        "code": first_code,
        "state": ablation.status()["state"],
        "rows": [row["variant"] for row in ablation.results()["rows"]],
        "top_plain_state": ablation.variant_run("top-plain").status()["state"],
        "base_evaluation": (ablation.path / "evaluations" / "base.json").stat().st_mtime_ns,
        "stages": stages,
    }
    ablation.cancel_path.unlink()
    yield home, ablation, first
    os.environ["DEFT_HOME"] = previous


@pytest.mark.model
def test_cancel_stops_at_current_variant(tiny_home):
    _, _, first = tiny_home
    assert first["code"] == 0
    assert first["state"] == "cancelled"
    assert first["rows"] == ["base", "top-guided"]
    assert first["top_plain_state"] == "cancelled"
    assert any(stage.startswith("base: evaluating") for stage in first["stages"])


@pytest.mark.model
def test_resume_finishes_remaining_variants(tiny_home, capsys):
    _, ablation, first = tiny_home
    assert main(["ablate", "--resume", str(ablation.path)]) == 0
    output = capsys.readouterr().out
    for name in ["base", *VARIANTS]:
        assert name in output

    assert ablation.status()["state"] == "completed"
    # The base model was evaluated once, before the cancel.
    assert (ablation.path / "evaluations" / "base.json").stat().st_mtime_ns == first["base_evaluation"]
    rows = ablation.results()["rows"]
    assert [row["variant"] for row in rows] == ["base", *VARIANTS]
    assert ablation.variant_run("top-plain").status()["step"] == 1


@pytest.mark.model
def test_results_rows_and_files(tiny_home):
    _, ablation, _ = tiny_home
    if ablation.status()["state"] != "completed":
        assert main(["ablate", "--resume", str(ablation.path)]) == 0
    results = ablation.results()
    assert results["held_out_pairs"] == 2
    assert results["generation_prompts"] == 2
    assert results["pool_pairs"] == LIMIT - 2
    rows = {row["variant"]: row for row in results["rows"]}

    # 20% of the 8 pooled pairs for top and random; every pooled pair for full.
    assert [rows[name]["train_pairs"] for name in VARIANTS] == [2, 2, 2, 2, 8, 8]
    assert all(rows[name]["pairs_seen"] == 1 for name in VARIANTS)
    assert [rows[name]["omega"] for name in VARIANTS] == [4.0, 0.0, 4.0, 0.0, 4.0, 0.0]
    for name, row in rows.items():
        for metric in ("preference_accuracy", "logprob_accuracy", "perplexity", "length_mean"):
            assert math.isfinite(row[metric]), f"{name}: {metric} is {row[metric]}"
        assert 0 <= row["preference_accuracy"] <= 1, name
    for name in VARIANTS:
        assert rows[name]["dpo_reward_accuracy"] in (0.0, 0.5, 1.0), name
        assert rows[name]["train_seconds"] > 0, name
    assert rows["base"]["dpo_reward_accuracy"] is None
    assert rows["base"]["run_logprob_accuracy"] in (0.0, 0.5, 1.0)
    # With an untrained model, both evaluations rank pairs by the same mean log-probs.
    assert rows["base"]["preference_accuracy"] == rows["base"]["logprob_accuracy"]

    # Each variant trained in its own run, with the planned subset and guidance.
    for name in VARIANTS:
        config = ablation.variant_run(name).config()
        assert config.selection == name.split("-")[0]
        assert (config.omega > 0) == name.endswith("guided")

    csv = pd.read_csv(ablation.path / "results.csv")
    assert csv["variant"].tolist() == ["base", *VARIANTS]
    html = ablation.plots_path.read_text(encoding="utf-8")
    assert "Distribution reward of generations" in html
    assert "Training time" in html
    evaluation = json.loads((ablation.path / "evaluations" / "full-plain.json").read_text())
    assert len(evaluation["outputs"]) == 2


@pytest.mark.model
def test_page_shows_finished_ablation(tiny_home):
    _, ablation, _ = tiny_home
    if ablation.status()["state"] != "completed":
        assert main(["ablate", "--resume", str(ablation.path)]) == 0
    app = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.title[0].value == "Ablation"
    listing = app.dataframe[0].value
    assert listing["ablation"].tolist()[0] == ablation.ablation_id
    table = app.dataframe[1].value
    assert table["variant"].tolist() == ["base", *VARIANTS]
    assert len(app.get("plotly_chart")) == 4
    assert any("completed" in markdown.value for markdown in app.markdown)

    app.toggle[0].set_value(True).run()
    assert "run_seconds" in app.dataframe[1].value.columns


def test_page_blocks_start_without_score_file(fresh_home, tmp_path):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("No ablations yet" in info.value for info in app.info)
    scores = next(box for box in app.text_input if box.label == "Score file")
    scores.set_value(str(tmp_path / "missing.parquet")).run()
    assert any("score file not found" in error.value for error in app.error)
    start = next(button for button in app.button if button.label == "Start ablation")
    assert start.disabled


def test_page_reports_invalid_value(fresh_home):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    scores = next(box for box in app.text_input if box.label == "Score file")
    scores.set_value("").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("scores is required" in error.value for error in app.error)
