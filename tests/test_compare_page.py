"""The Compare page under streamlit's AppTest: generation in the background, the table, escaping, reports.

The page tests share the tiny trained run of tests/test_compare.py (one training per test session).
"""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_compare import compare_home, tiny_run  # noqa: F401 (fixtures shared with the CLI tests)

from deft_core.compare.comparison import saved_comparisons
from deft_core.training.runs import open_run

pytestmark = pytest.mark.model

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_compare_page() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    app.switch_page("pages/compare.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def wait_for_results(app: AppTest, timeout_s: float = 600) -> None:
    """Rerun the page until the comparison's metrics table or an error shows."""
    deadline = time.monotonic() + timeout_s
    while not app.dataframe and not app.error and time.monotonic() < deadline:
        time.sleep(0.5)
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert app.dataframe, "the comparison did not finish in time"


def rendered_html(app: AppTest) -> str:
    return "".join(element.proto.body for element in app.html)


def test_page_without_runs_points_to_train(fresh_home):
    app = open_compare_page()
    assert app.title[0].value == "Compare"
    assert "No finished run yet" in app.info[0].value


def test_page_compares_held_out_pairs(tiny_run):  # noqa: F811
    app = open_compare_page()
    assert app.multiselect(key="compare.runs").value == [tiny_run.name]
    app.number_input(key="compare.limit").set_value(2).run()
    app.number_input(key="compare.max_new").set_value(6).run()
    before = len(saved_comparisons(open_run(tiny_run)))
    app.button(key="compare.start").click().run()
    wait_for_results(app)

    table = app.dataframe[0].value
    assert table["model"].tolist() == ["base", tiny_run.name]
    assert {"preference_accuracy", "reward_mean", "bleu", "perplexity", "length_mean"} <= set(table.columns)
    assert len(app.get("plotly_chart")) == 3
    for chart in app.get("plotly_chart"):
        layout = json.loads(chart.proto.spec)["layout"]
        for axis in (value for key, value in layout.items() if key.startswith("yaxis")):
            assert axis.get("exponentformat") == "e", "small BLEU ticks are written as 4e-04, not 400μ"
    assert len(app.get("download_button")) == 3
    body = rendered_html(app)
    assert "<b>base</b>" in body
    assert f"<b>{tiny_run.name}</b>" in body
    assert len(saved_comparisons(open_run(tiny_run))) == before + 1

    app.button(key="compare.save").click().run()
    assert not app.exception
    folder = saved_comparisons(open_run(tiny_run))[0].parent
    assert "Saved" in app.success[-1].value
    assert (folder / "report.md").read_text().startswith("# Model comparison")
    assert "Plotly.newPlot" in (folder / "report.html").read_text()

    # The same request again opens the saved result instead of generating a second time.
    app.button(key="compare.start").click().run()
    assert app.dataframe[0].value["model"].tolist() == ["base", tiny_run.name]
    assert len(saved_comparisons(open_run(tiny_run))) == before + 1


def test_page_typed_prompts_escape_markup(tiny_run):  # noqa: F811
    app = open_compare_page()
    app.checkbox(key="compare.base").uncheck().run()
    app.radio(key="compare.source").set_value("typed").run()
    prompt = "Repeat: <script>alert('x')</script> and <b>bold</b> <img src=x onerror=alert(2)>"
    app.text_area(key="compare.prompts").input(f"{prompt}\nSay hi.").run()
    app.number_input(key="compare.max_new").set_value(5).run()
    app.button(key="compare.start").click().run()
    wait_for_results(app)

    table = app.dataframe[0].value
    assert table["model"].tolist() == [tiny_run.name]
    assert "preference_accuracy" not in table.columns  # typed prompts have no chosen response
    body = rendered_html(app)
    assert "<script" not in body
    assert "<img" not in body
    assert "<b>bold</b>" not in body
    visible = html.unescape(re.sub(r"<[^>]+>", "", body))
    assert f"User: {prompt}" in visible


def test_page_rejects_empty_typed_prompts(tiny_run):  # noqa: F811
    app = open_compare_page()
    app.radio(key="compare.source").set_value("typed").run()
    assert "the prompt list is empty" in app.error[0].value
    assert app.button(key="compare.start").disabled
