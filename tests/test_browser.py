"""End to end in headless Chromium: load, score, threshold, inspect and export on the bundled sample.

Needs Debian's chromium at /usr/bin/chromium and the playwright package; skips without them.
Screenshots go to test-artifacts/browser/, which git ignores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
LIMIT = 32  # the sample's line 32 contains <script> text in its prompt and chosen response
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}; apt-get install chromium"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout_s} s")


@pytest.fixture
def server(tmp_path, bundled):
    """A dashboard server on a free loopback port with its own deft home."""
    home = tmp_path / "home"
    (home / "dashboard").mkdir(parents=True)
    (home / "models").symlink_to(Path(os.environ["DEFT_HOME"]) / "models")
    (home / "dashboard" / "settings.json").write_text(json.dumps({"limit": LIMIT}))
    port = free_port()
    log = (tmp_path / "streamlit.log").open("w")
    command = [
        str(REPO / ".venv" / "bin" / "streamlit"),
        "run",
        str(REPO / "app.py"),
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.headless=true",
        "--server.fileWatcherType=none",
    ]
    environment = {**os.environ, "DEFT_HOME": str(home)}
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
        yield url, home
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.copy(tmp_path / "streamlit.log", ARTIFACTS / "streamlit.log")


@pytest.fixture
def page():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        # Record every request that leaves this machine: the dashboard must work offline. A passive
        # listener, not context.route, so the test intercepts nothing the dashboard sends.
        outside: list[str] = []
        context.on("request", lambda request: leaves_loopback(request.url) and outside.append(request.url))
        tab = context.new_page()
        tab.outside_requests = outside
        tab.set_default_timeout(60_000)
        dialogs: list[str] = []
        tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        tab.dialogs = dialogs
        yield tab
        browser.close()


def leaves_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob", "about") and parts.hostname not in ("127.0.0.1", "localhost")


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def open_page(page, name: str) -> None:
    page.get_by_role("link", name=name).click()
    page.get_by_role("heading", name=name, exact=True, level=1).wait_for()


def metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def settle(page) -> None:
    """Wait until the app is not running a script: the status widget leaves the page."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def test_dashboard_end_to_end(server, page):
    url, home = server
    page.goto(url)
    page.get_by_role("heading", name="Data", exact=True, level=1).wait_for()
    settle(page)
    assert metric_value(page, "Pairs loaded") == str(LIMIT)
    page.locator(".js-plotly-plot").first.wait_for()
    page.screenshot(path=ARTIFACTS / "1-data.png", full_page=True)

    open_page(page, "Token distributions")
    page.locator(".js-plotly-plot").nth(3).wait_for()
    page.get_by_label("Find tokens containing").fill("sorry")
    page.keyboard.press("Enter")
    settle(page)
    page.screenshot(path=ARTIFACTS / "2-tokens.png", full_page=True)

    open_page(page, "Rewards and threshold")
    page.get_by_role("button", name=f"Score {LIMIT} pairs").click()
    page.get_by_text("Cancel scoring").wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "3-scoring.png", full_page=True)
    page.locator('[data-testid="stMetric"]').filter(has_text="Kept").first.wait_for(timeout=300_000)
    settle(page)
    assert metric_value(page, "Kept") == "2"  # top 5% of 32 pairs
    page.get_by_text("Score ≥ threshold").click()
    settle(page)
    assert int(metric_value(page, "Kept")) >= 1  # starts at the top-5% cut
    # Until the rerun ends, the top-k slider of the previous mode may still be on the page.
    threshold = page.locator('[data-testid="stSlider"]').filter(has_text="Threshold on the pair score")
    threshold.get_by_role("slider").focus()
    page.keyboard.press("Home")  # the lowest threshold keeps every pair
    kept = page.locator('[data-testid="stMetric"]').filter(has_text="Kept").first
    expect(kept.locator('[data-testid="stMetricValue"]')).to_have_text(str(LIMIT), timeout=30_000)
    track = threshold.bounding_box()
    page.mouse.click(track["x"] + track["width"] * 0.6, track["y"] + track["height"] * 0.75)
    expect(kept.locator('[data-testid="stMetricValue"]')).not_to_have_text(str(LIMIT), timeout=30_000)
    settle(page)
    after = int(metric_value(page, "Kept"))
    assert after < LIMIT
    assert int(metric_value(page, "Dropped")) == LIMIT - after
    page.screenshot(path=ARTIFACTS / "4-threshold.png", full_page=True)
    page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "4-threshold-charts.png")

    open_page(page, "Inspect pairs")
    page.get_by_label("Search pair id, prompt or responses").fill("comment section")
    page.keyboard.press("Enter")
    settle(page)
    tokens = page.locator(".deft-tokens").first
    tokens.wait_for(timeout=120_000)
    assert page.locator(".deft-tokens script, .deft-tokens b").count() == 0
    chosen_text = re.sub(r"\s+", " ", page.locator(".deft-tokens").first.inner_text())
    assert "<script>alert(1)</script>" in chosen_text.replace("↵", "")
    assert page.get_by_text("types <script>alert(1)</script> into a comment").count() >= 1
    assert page.dialogs == []  # no injected script ran
    page.screenshot(path=ARTIFACTS / "5-inspect.png", full_page=True)
    tokens.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "5-inspect-tokens.png")

    open_page(page, "Export")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Kept pairs (.jsonl)").click()
    download = download_info.value
    target = ARTIFACTS / "kept.jsonl"
    download.save_as(target)
    assert len(target.read_text().splitlines()) == after
    page.get_by_label("Subset name").fill("browser-subset")
    page.get_by_role("button", name="Save subset").click()
    page.get_by_text("Saved", exact=False).first.wait_for()
    assert (home / "workspace" / "subsets" / "browser-subset" / "kept.jsonl").is_file()
    page.screenshot(path=ARTIFACTS / "6-export.png", full_page=True)

    for name in ("Train", "Compare", "Ablation"):
        open_page(page, name)
        settle(page)
    assert page.outside_requests == []  # every page, favicons included, loads from the local server
