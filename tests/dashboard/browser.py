"""What the browser tests share: ``streamlit run`` on a free loopback port, Debian's
headless Chromium through playwright (never a downloaded browser), waits and screenshots."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
WAIT_MS = 90_000  # a generous bound on each wait, so a broken app fails instead of hanging


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def streamlit(db: Path, log_path: Path) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free loopback port over the SQLite file ``db``;
    yields its base URL and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "RECON_DB_URL": f"sqlite:///{db}"}
    # No embedded watcher: its batches of the month closing today would share the
    # Batch runs page with the runs the tests start and read.
    env["RECON_WATCH_EMBEDDED"] = "false"
    log = log_path.open("w")
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base, log_path)
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


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


RENDERED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]')) return false;
    const main = document.querySelector('[data-testid="stMain"]');
    const charts = main ? [...main.querySelectorAll('[data-testid="stPlotlyChart"]')] : [];
    return !!main && charts.every(c => c.querySelector('.main-svg'));
}"""
"""True once the script run has ended (Streamlit's state, which its running indicator
shows), nothing is left of the page before, and every Plotly chart of the main element
is drawn."""


TITLED = """title => [...document.querySelectorAll('[data-testid="stMain"] h1')]
    .some(h => h.innerText.trim() === title)"""


def titled(page: Page, title: str) -> None:
    """Wait until the main element shows the title ``title`` (exactly: a heading of the
    page before that merely contains it does not count)."""
    page.wait_for_function(TITLED, arg=title, timeout=WAIT_MS, polling="raf")


def rendered(page: Page) -> None:
    """Wait until the page's content is rendered (see :data:`RENDERED`)."""
    page.wait_for_function(RENDERED, timeout=WAIT_MS, polling="raf")


def settle(page: Page) -> None:
    """Wait until the page has finished its script run and drawn its elements."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=WAIT_MS
    )
    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=WAIT_MS)
    page.wait_for_timeout(500)  # charts render after the script run ends
    assert page.get_by_test_id("stException").count() == 0, "a traceback is shown"


def screenshot(page: Page, name: str) -> Path:
    """The whole page: the viewport grows to the app's scroll height first."""
    OUT.mkdir(exist_ok=True)
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer]')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1500, "height": min(max(int(height) + 40, 1000), 8000)})
    page.wait_for_timeout(500)  # charts re-layout to the new size
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 1000})
    return path
