"""Every dashboard page under streamlit's AppTest, with interaction and bad input.

The pages share one deft home per module, scored once for the first 24 sample pairs, so that
each test reads cached scores instead of running the model again.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from deft_core.filtering import Selection, percent_count, select
from deft_core.loading import DataOptions, load_pairs
from deft_core.scoring import ScoreOptions, score_data

pytestmark = pytest.mark.model

APP = str(Path(__file__).resolve().parent.parent / "app.py")
LIMIT = 24
MARKUP_PAIRS = [
    {
        "prompt": "Show me <script>alert('x')</script> please",
        "chosen": "Here it is as text: <script>alert('x')</script> and <b>bold</b>.",
        "rejected": "<b>No</b> <img src=x onerror=alert(2)>",
    },
    {"prompt": "Say hi", "chosen": "Hello there, how can I help?", "rejected": "Go away."},
    {"prompt": "Add 2 and 2", "chosen": "2 + 2 = 4.", "rejected": "It is 5."},
]


@pytest.fixture(scope="module")
def app_home(tmp_path_factory, bundled) -> Path:
    """A deft home with the sample's first 24 pairs scored under default options."""
    shared_models = Path(os.environ["DEFT_HOME"]) / "models"
    home = tmp_path_factory.mktemp("app-home")
    (home / "models").symlink_to(shared_models)
    previous = os.environ["DEFT_HOME"]
    os.environ["DEFT_HOME"] = str(home)
    score_data(load_pairs(DataOptions("sample", limit=LIMIT)), bundled, ScoreOptions())
    yield home
    os.environ["DEFT_HOME"] = previous


def write_settings(home: Path, **settings) -> None:
    folder = home / "dashboard"
    folder.mkdir(exist_ok=True)
    (folder / "settings.json").write_text(json.dumps({"limit": LIMIT, **settings}))


def open_page(page: str | None = None) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    if page:
        app.switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def chart_axes(app: AppTest) -> list[dict]:
    """Return the x and y axis layouts of every plotly chart on the page."""
    axes = []
    for chart in app.get("plotly_chart"):
        layout = json.loads(chart.proto.spec)["layout"]
        axes += [value for key, value in layout.items() if key.startswith(("xaxis", "yaxis"))]
    return axes


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_data_page_shows_audit_and_lengths(app_home):
    write_settings(app_home)
    app = open_page()
    assert app.title[0].value == "Data"
    assert metric(app, "Pairs loaded") == "24"
    assert metric(app, "Detected format") == "hh"
    assert app.success[0].value.startswith("No row was skipped")
    assert len(app.get("plotly_chart")) == 1
    assert len(app.dataframe) >= 2


def test_data_page_lists_problems(app_home, tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [json.dumps(MARKUP_PAIRS[1]), "{broken", json.dumps(MARKUP_PAIRS[1]), json.dumps({"prompt": "x"})]
    path.write_text("\n".join(rows) + "\n")
    write_settings(app_home, data_source="path", data_path=str(path))
    app = open_page()
    assert metric(app, "Rows skipped") == "2"
    labels = [e.label for e in app.expander]
    assert any(label.startswith("unparseable: 1 row skipped") for label in labels)
    assert any(label.startswith("duplicate: 1 pair kept and flagged") for label in labels)


def test_malformed_upload_shows_error(app_home):
    write_settings(app_home, data_source="upload")
    app = open_page()
    app.sidebar.get("file_uploader")  # the widget exists in the sidebar
    app.file_uploader(key="upload_file").set_value(("bad.jsonl", b"not json\n{also: bad\n", "text/plain"))
    app.run()
    assert not app.exception
    assert "no usable preference pairs" in app.error[0].value
    assert "unparseable" in app.error[0].value


def test_missing_local_path_shows_error(app_home):
    write_settings(app_home, data_source="path", data_path="/nonexistent/pairs.jsonl")
    app = open_page()
    assert not app.exception
    assert "file not found" in app.error[0].value


def test_token_page_charts_and_search(app_home):
    write_settings(app_home)
    app = open_page("pages/tokens.py")
    assert len(app.get("plotly_chart")) == 4
    for axis in chart_axes(app):
        assert axis.get("automargin") is True, "tick labels and titles grow the margins"
        assert axis.get("exponentformat") == "e", "Q_diff ticks are written as 2e-05, not 20μ"
    app.text_input(key="tokens.query").set_value("the").run()
    assert not app.exception
    assert "Tokens seen in the data that match" in app.markdown[-1].value


def test_token_page_alpha_updates_sidebar(app_home):
    write_settings(app_home)
    app = open_page("pages/tokens.py")
    app.number_input(key="tokens.alpha").set_value(0.5).run()
    assert app.number_input(key="setting.alpha").value == 0.5
    saved = json.loads((app_home / "dashboard" / "settings.json").read_text())
    assert saved["alpha"] == 0.5


def test_threshold_moves_kept_count(app_home):
    write_settings(app_home)
    app = open_page("pages/rewards.py")
    assert metric(app, "Kept") == str(percent_count(LIMIT, 5))
    app.radio(key="rewards.method").set_value("threshold").run()
    from deft_core import store

    key = next(p.name for p in (app_home / "scores").iterdir() if not p.name.startswith("."))
    table, _ = store.cached_scores(key)
    scores = table["score"].to_numpy()
    for value in sorted(scores)[5], sorted(scores)[18]:
        app.slider(key="rewards.threshold").set_value(float(value)).run()
        expected = int(select(scores, Selection("threshold", float(value))).sum())
        assert metric(app, "Kept") == str(expected)
        assert metric(app, "Dropped") == str(LIMIT - expected)
    app.radio(key="rewards.method").set_value("top").run()
    app.slider(key="rewards.percent").set_value(50.0).run()
    assert metric(app, "Kept") == "12"
    assert len(app.get("plotly_chart")) == 3


def test_selection_persists_across_pages_and_reload(app_home):
    write_settings(app_home, method="bottom", percent=25.0)
    app = open_page("pages/rewards.py")
    app.slider(key="rewards.percent").set_value(50.0).run()
    app.switch_page("pages/export.py").run()
    assert metric(app, "Kept") == "12"
    reloaded = open_page("pages/rewards.py")
    assert reloaded.slider(key="rewards.percent").value == 50.0
    assert reloaded.radio(key="rewards.method").value == "bottom"


def test_background_scoring_from_button(app_home, tmp_path):
    path = tmp_path / "markup.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in MARKUP_PAIRS))
    write_settings(app_home, data_source="path", data_path=str(path), method="top", percent=50.0)
    app = open_page("pages/rewards.py")
    app.button(key="rewards.start").click().run()
    for _ in range(120):
        if any(m.label == "Kept" for m in app.metric):
            break
        time.sleep(0.5)
        app.run()
    assert not app.exception
    assert metric(app, "Kept") == "2"

    app.switch_page("pages/inspect_pairs.py").run()
    assert not app.exception
    # The search leaves only the markup pair, which the pair view then shows.
    app.text_input(key="inspect.query").set_value("alert").run()
    assert len(app.selectbox(key="inspect.pair").options) == 1
    rendered = "".join(element.proto.body for element in app.html)
    assert "<script" not in rendered
    assert "<img" not in rendered
    assert "<b>" not in rendered
    # Tokens split the markup over several spans; the visible text still reads as written.
    visible = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    assert "Show me <script>alert('x')</script> please" in visible
    assert "<script>alert('x')</script> and <b>bold</b>." in visible
    assert "<img src=x onerror=alert(2)>" in visible


def test_inspect_page_without_scores_points_to_rewards(app_home):
    write_settings(app_home, limit=7)
    app = open_page("pages/inspect_pairs.py")
    assert "not scored yet" in app.warning[0].value


def test_export_saves_to_workspace(app_home):
    write_settings(app_home, method="top", percent=25.0)
    app = open_page("pages/export.py")
    assert metric(app, "Kept") == "6"
    assert len(app.get("download_button")) == 3
    app.text_input(key="export.name").set_value("apptest-subset").run()
    app.button(key="export.save").click().run()
    assert not app.exception
    folder = app_home / "workspace" / "subsets" / "apptest-subset"
    assert "Saved 6 kept and 18 dropped" in app.success[0].value
    assert len((folder / "kept.jsonl").read_text().splitlines()) == 6
    assert len((folder / "kept.dropped.jsonl").read_text().splitlines()) == 18
    assert json.loads((folder / "kept.ids.json").read_text())["kept"] == 6
    app.button(key="export.save").click().run()
    assert "already exists" in app.error[0].value
