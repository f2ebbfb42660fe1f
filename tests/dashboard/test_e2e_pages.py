"""Every dashboard page's time to render in headless Chromium, on a 130-district June.

The engine reconciles June 2025 (its long closing period) for every district of
the simulator in a real SQLite file; the dashboard runs on it with
``streamlit run``. Each page is timed until its content is rendered: its title
is shown, Streamlit's script run has ended and every chart is drawn
(:data:`tests.dashboard.browser.RENDERED`); in two ways: from a click on its
sidebar link (``<page>_s``) and from its address typed into a new tab of the
same browser (``<page>_load_s``, a whole app load). Each is the median of
:data:`ROUNDS` rounds over every page, as page-load figures are usually given;
``worst_single_s`` is the slowest single time of all of them. ``app_start_s``
is the very first page, which starts the dashboard's engine; ``slowest_page_s``
and ``slowest_load_s`` the slowest page's median click and new tab.

The figures are recorded, not judged here (no timing thresholds in pytest):
stored as the ``pages`` benchmark suite in the database, where the Before /
after page shows them against their targets (under 2 s), and
written to ``test-output/page-timings.json`` (and stored in the database
``RECON_PAGES_DB_URL`` names, when set).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from engine import settings as settings_mod
from engine.app.console import Console, open_storage
from engine.bench import PAGES_SUITE, store
from engine.settings import StorageSettings
from engine.sources.sim import DISTRICTS
from tests.dashboard.browser import (
    OUT,
    WAIT_MS,
    chromium,
    rendered,
    screenshot,
    streamlit,
    titled,
)

MONTH = "2025-06"
PAGES = {  # sidebar link -> the page's title, its name in the figures, and its URL path
    "Close progress": (f"Close progress · {MONTH}", "close", ""),
    "Batch runs": ("Batch runs", "batch", "batch"),
    "Cache": ("Cache", "cache", "cache"),
    "Performance": ("Performance", "performance", "performance"),
    "Before / after": ("Before / after", "before_after", "before-after"),
    "Settings": ("Settings", "settings", "settings"),
}

ROUNDS = 3  # each page is timed this many times each way; its figures are the medians
RECORD_ENV = "RECON_PAGES_DB_URL"  # a database that also gets the figures, e.g. `make bench`'s

pytestmark = pytest.mark.e2e


@pytest.fixture
def june(tmp_path: Path) -> Path:
    """A database holding June 2025 reconciled for all 130 districts, with the monitor's
    history of that work."""
    db = tmp_path / "recon.db"
    overrides = {"storage": {"db_url": f"sqlite:///{db}"}}
    console = Console(settings_mod.load(env={}, overrides=overrides))
    try:
        console.start_batch(MONTH)
        console.batch.run(until_idle=True)
        assert len(console.jobs(MONTH)) == len(DISTRICTS) == 130
        console.monitor.flush()
    finally:
        console.close()
    return db


@pytest.fixture
def served(june: Path, tmp_path: Path) -> Iterator[tuple[BrowserContext, str]]:
    """A headless Chromium's browser context (one user: tabs share its cache) and the base
    URL of the dashboard over :func:`june`."""
    with streamlit(june, tmp_path / "streamlit.log") as base, chromium() as browser:
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        yield context, base
        context.close()


def load(context: BrowserContext, base: str, link: str) -> tuple[Page, float]:
    """A new tab opening ``link``'s page by its address; seconds until it is rendered."""
    title, _, path = PAGES[link]
    tab = context.new_page()
    started = time.perf_counter()
    tab.goto(f"{base}/{path}")
    titled(tab, title)
    rendered(tab)
    return tab, time.perf_counter() - started


def visit(page: Page, link: str) -> float:
    """Seconds from a click on the sidebar's ``link`` until the page is rendered."""
    title = PAGES[link][0]
    started = time.perf_counter()
    page.get_by_role("link", name=link, exact=True).click()
    titled(page, title)
    rendered(page)
    took = time.perf_counter() - started
    assert page.get_by_test_id("stException").count() == 0, f"{link} shows a traceback"
    return took


def test_every_page_is_timed_and_the_figures_are_recorded(
    served: tuple[BrowserContext, str], june: Path
) -> None:
    context, base = served
    page, app_start = load(context, base, "Close progress")  # it starts the dashboard's engine
    order = [*list(PAGES)[1:], "Close progress"]  # the first page is open already
    clicks: dict[str, list[float]] = {PAGES[link][1]: [] for link in PAGES}
    loads: dict[str, list[float]] = {PAGES[link][1]: [] for link in PAGES}
    for _ in range(ROUNDS):
        for link in order:
            clicks[PAGES[link][1]].append(visit(page, link))
        for link in PAGES:
            tab, took = load(context, base, link)
            loads[PAGES[link][1]].append(took)
            tab.close()
    every = [s for times in [*clicks.values(), *loads.values()] for s in times]
    assert len(every) == 2 * ROUNDS * len(PAGES)
    assert all(0 < s < WAIT_MS / 1000 for s in [app_start, *every])
    clicked = {name: statistics.median(times) for name, times in clicks.items()}
    loaded = {name: statistics.median(times) for name, times in loads.items()}
    result: dict[str, object] = {f"{name}_s": round(s, 3) for name, s in clicked.items()}
    result |= {f"{name}_load_s": round(s, 3) for name, s in loaded.items()}
    result |= {
        "slowest_page_s": round(max(clicked.values()), 3),
        "slowest_load_s": round(max(loaded.values()), 3),
        "worst_single_s": round(max(every), 3),
        "rounds": ROUNDS,
        "app_start_s": round(app_start, 3),
        "districts": len(DISTRICTS),
        "month": MONTH,
    }

    stored = record(f"sqlite:///{june}", result)
    if os.environ.get(RECORD_ENV):  # also beside the benchmarks of a database of one's own
        record(os.environ[RECORD_ENV], result)
    OUT.mkdir(exist_ok=True)
    (OUT / "page-timings.json").write_text(json.dumps({"id": stored, **result}, indent=2) + "\n")

    # the Before / after page shows the stored figures beside the benchmarks
    visit(page, "Before / after")
    page.reload()
    expect(page.get_by_text("slowest_page_s").first).to_be_visible(timeout=WAIT_MS)
    rendered(page)
    screenshot(page, "pages-before-after")
    visit(page, "Close progress")
    screenshot(page, "pages-close")
    viewer_load_and_what_if(page)


def record(db_url: str, result: dict[str, object]) -> int:
    """Store the figures as the ``pages`` suite in ``db_url``'s ``bench_results``."""
    storage = open_storage(StorageSettings(db_url=db_url, mode="naive"))
    try:
        return store(storage, PAGES_SUITE, result, quick=False, when=datetime.now(UTC))
    finally:
        storage.close()


def choose(page: Page, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label)
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()


def viewer_load_and_what_if(page: Page) -> None:
    """The Cache page's demo: a short viewer load, then its reads replayed."""
    visit(page, "Cache")
    page.get_by_label("Readers").fill("5")
    page.get_by_label("Duration (s)").fill("2")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_text("Last viewer load")).to_be_visible(timeout=WAIT_MS)
    rendered(page)
    assert int(page.get_by_test_id("stMetric").filter(has_text="Reads done").first
               .get_by_test_id("stMetricValue").inner_text().replace(",", "")) > 0  # fmt: skip
    choose(page, "Cache", "read cache: timelines")
    choose(page, "Whose reads", "viewers")
    page.get_by_role("button", name="Simulate", exact=True).click()
    expect(page.get_by_text("Hit rate by size: read cache: timelines")).to_be_visible(
        timeout=WAIT_MS
    )
    rendered(page)
    screenshot(page, "pages-cache")
