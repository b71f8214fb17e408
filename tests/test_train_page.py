"""The Train page, driven through Streamlit's AppTest without a browser."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from deft_core.training.config import TrainConfig
from deft_core.training.runs import create_run

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "train.py")


def test_page_shows_config_and_no_runs(fresh_home):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value == "Train"
    assert any("method: dpo" in code.value for code in app.code)
    assert any("No runs yet" in info.value for info in app.info)


def test_page_lists_failed_run_with_error(fresh_home):
    run = create_run(TrainConfig(data="sample", name="page"))
    run.set_status("failed", error="RuntimeError: out of memory")
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception
    assert run.run_id in app.dataframe[0].value["run"].tolist()
    assert any("out of memory" in error.value for error in app.error)
    assert any(button.label == "Resume run" for button in app.button)


def test_page_blocks_start_without_score_file(fresh_home, tmp_path):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    preset = next(box for box in app.selectbox if box.label == "Preset")
    preset.set_value("deft-dpo.yaml").run()
    # The preset's own score file may exist on a machine that ran it, so point at a missing one.
    scores = next(box for box in app.text_input if box.label == "Score file")
    scores.set_value(str(tmp_path / "missing.parquet")).run()
    assert any("score file not found" in error.value for error in app.error)
    start = next(button for button in app.button if button.label == "Start run")
    assert start.disabled


def test_page_guidance_toggle_sets_omega_zero(fresh_home):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    app.toggle[0].set_value(False).run()
    assert any("omega: 0.0" in code.value for code in app.code)


def test_more_settings_reach_the_config(fresh_home):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    expander = next(e for e in app.expander if e.label.startswith("More settings"))
    assert "24 fields" in expander.label  # every config field is on the page, in one form or the other
    app.text_input(key="train.more.batch_size").set_value("1").run()
    app.text_input(key="train.more.target_modules").set_value("q_proj,v_proj").run()
    app.checkbox(key="train.more.export_merged").set_value(True).run()
    resolved = next(code.value for code in app.code if "method:" in code.value)
    assert "batch_size: 1" in resolved
    assert "- q_proj\n- v_proj" in resolved
    assert "export_merged: true" in resolved


def test_more_settings_report_bad_values(fresh_home):
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    app.text_input(key="train.more.lora_dropout").set_value("1.5").run()
    assert any("lora_dropout must be in [0, 1)" in error.value for error in app.error)
    app.text_input(key="train.more.lora_dropout").set_value("0.05").run()
    app.text_input(key="train.more.columns").set_value("{not json").run()
    assert any("columns takes a JSON object" in error.value for error in app.error)
