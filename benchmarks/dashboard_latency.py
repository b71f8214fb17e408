"""Measure dashboard page render and threshold-move times on cached scores, with streamlit's AppTest.

Usage: .venv/bin/python benchmarks/dashboard_latency.py [DATA_PATH] [--repeats N]

The first run scores DATA_PATH once with the bundled model (minutes on a CPU for the 2,312-line
HH file) and caches the scores under $DEFT_HOME; later runs read the cache. Reported times are
the median of N AppTest runs of each page in one session, after one warm-up run, so they include
the script and streamlit's caches but not the browser's drawing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from deft_core.dashboard_state import settings_path
from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.scoring import ScoreOptions, score_data

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
PAGES = ["pages/data.py", "pages/tokens.py", "pages/rewards.py", "pages/inspect_pairs.py", "pages/export.py"]


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA), help="preference file to load")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per page")
    args = parser.parse_args()

    started = time.perf_counter()
    result = score_data(load_pairs(DataOptions(args.data)), load_model("bundled"), ScoreOptions())
    seconds = time.perf_counter() - started
    print(f"scores: {len(result.table)} pairs, from cache: {result.from_cache}, {seconds:.1f} s")

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data_source": "path", "data_path": args.data, "method": "threshold"}))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    first = timed(app.run)
    print(f"first run of the Data page (cold streamlit caches): {first:.2f} s")
    for page in PAGES:
        cold = timed(lambda page=page: app.switch_page(page).run())
        times = [timed(app.run) for _ in range(args.repeats)]
        assert not app.exception, [e.value for e in app.exception]
        print(f"{page:24} first {cold:6.2f} s   median of {args.repeats}: {statistics.median(times):.3f} s")

    app.switch_page("pages/rewards.py").run()
    slider = app.slider(key="rewards.threshold")
    low, high = slider.min, slider.max
    moves = []
    for step in range(args.repeats * 2):
        value = low + (high - low) * (0.2 + 0.6 * step / (args.repeats * 2))
        moves.append(timed(lambda value=value: app.slider(key="rewards.threshold").set_value(value).run()))
    kept = next(m.value for m in app.metric if m.label == "Kept")
    median = statistics.median(moves)
    print(f"threshold move on the Rewards page: median {median:.3f} s, max {max(moves):.3f} s")
    print(f"(last threshold keeps {kept} pairs)")


if __name__ == "__main__":
    main()
