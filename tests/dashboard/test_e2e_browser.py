"""The whole dashboard in a real headless Chromium: start a run, watch it finish, read it.

Drives Debian's Chromium (``/usr/bin/chromium``; ``.ci/run`` installs it) with
playwright, never a downloaded browser, against ``streamlit run`` on a free port
of 127.0.0.1 and a fresh SQLite database. Screenshots of every page go to
``test-output/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.browser import WAIT_MS, chromium, screenshot, settle, streamlit

MONTH = "2025-06"
DISTRICTS = ("1", "2", "F")

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free loopback port and a fresh database."""
    with streamlit(tmp_path / "recon.db", tmp_path / "streamlit.log") as base:
        yield base


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


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
    # each pick reruns the page: a click on Start during a rerun can be lost (it was once
    # on a loaded CI machine), so the page settles first
    settle(page)
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
    expect(page.get_by_role("heading", name="Bottlenecks")).to_be_visible(timeout=WAIT_MS)
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
