"""The whole dashboard in a real headless Chromium: start a run, watch it finish, read it.

Drives Debian's Chromium (``/usr/bin/chromium``; ``.ci/run`` installs it) with
playwright, never a downloaded browser, against ``streamlit run`` on a free port
of 127.0.0.1 and a fresh SQLite database. Screenshots of every page go to
``test-output/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-output"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MONTH = "2025-06"
DISTRICTS = ("1", "2", "F")
WAIT_MS = 90_000  # a generous bound on each wait, so a broken app fails instead of hanging

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free loopback port and a fresh database."""
    port = free_port()
    env = {**os.environ, "RECON_DB_URL": f"sqlite:///{tmp_path / 'recon.db'}"}
    # No embedded watcher: its batches of the month closing today would share the
    # Batch runs page with the run this test starts and reads.
    env["RECON_WATCH_EMBEDDED"] = "false"
    log = (tmp_path / "streamlit.log").open("w")
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base, tmp_path / "streamlit.log")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/_stcore/health", timeout=2).text == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"streamlit did not become healthy:\n{log.read_text()}")


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


def settle(page: Page) -> None:
    """Wait until the page has finished its script run and drawn its elements."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=WAIT_MS
    )
    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=WAIT_MS)
    page.wait_for_timeout(500)  # charts render after the script run ends
    assert page.get_by_test_id("stException").count() == 0, "a traceback is shown"


def screenshot(page: Page, name: str) -> None:
    """The whole page: the viewport grows to the app's scroll height first."""
    OUT.mkdir(exist_ok=True)
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer]')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1500, "height": min(max(int(height) + 40, 1000), 8000)})
    page.wait_for_timeout(500)  # charts re-layout to the new size
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 1000})


def open_page(page: Page, link: str, heading: str | re.Pattern[str]) -> None:
    page.get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=WAIT_MS)
    settle(page)


def metric(page: Page, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has_text=label).first
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def start_run(page: Page) -> None:
    page.get_by_label("Month (YYYY-MM)").fill(MONTH)
    chooser = page.get_by_role("combobox", name="Districts")
    for district in DISTRICTS:
        chooser.click()
        chooser.fill(district)
        page.get_by_role("option", name=district, exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Start", exact=True).click()


def test_month_end_run_from_the_browser(server: str, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{server}/batch")
    expect(page.get_by_role("heading", name="Start a batch")).to_be_visible(timeout=WAIT_MS)
    settle(page)

    start_run(page)
    progress = page.get_by_text(re.compile(r"month-end 2025-06: 100 %"))
    expect(progress).to_be_visible(timeout=WAIT_MS)
    settle(page)
    assert metric(page, "Succeeded") == str(len(DISTRICTS))
    screenshot(page, "batch")

    open_page(page, "Close progress", f"Close progress · {MONTH}")
    assert metric(page, "Completed") == str(len(DISTRICTS))
    assert metric(page, "Failed") == "0"
    assert metric(page, "Finalized") == "100 %"
    screenshot(page, "close-progress")

    open_page(page, "Cache", "Cache")
    assert int(metric(page, "Entries").split(" / ")[0]) > 0
    page.get_by_role("button", name="Clear caches").click()
    page.get_by_role("button", name="Yes, clear").click()
    expect(page.get_by_text(re.compile("entries removed"))).to_be_visible(timeout=WAIT_MS)
    settle(page)
    assert metric(page, "Entries").startswith("0 / ")
    screenshot(page, "cache")

    open_page(page, "Performance", "Performance")
    expect(page.get_by_role("heading", name="Bottlenecks")).to_be_visible()
    screenshot(page, "performance")

    open_page(page, "Before / after", "Before / after")
    for label, value in (
        ("Districts", "3"),
        ("Latency per fetch (ms)", "0"),
        ("Closing period (days)", "3"),
    ):
        page.get_by_label(label).fill(value)
    page.get_by_role("button", name="Run before/after").click()
    expect(page.get_by_text("This run")).to_be_visible(timeout=WAIT_MS)
    settle(page)
    assert metric(page, "Speed-up").endswith("×")
    screenshot(page, "before-after")

    open_page(page, "Settings", "Settings")
    screenshot(page, "settings")
