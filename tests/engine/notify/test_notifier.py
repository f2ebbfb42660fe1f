"""Where events come from: job writes seen by the console's notifier, the watcher's missed
ticks, and the performance evaluation over the console's real figures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from engine.app.alerts import month_final_event, perf_figures
from engine.app.console import Console
from engine.app.watcher import WATCHER_LEASE
from engine.clock import FakeClock
from engine.domain.models import JobStatus
from engine.settings import Settings
from engine.store.events import EventKind
from engine.store.watcher import SqlWatcherStatus, WatcherStatus

START = datetime(2026, 1, 10, tzinfo=UTC)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    settings = Settings().with_values("storage", db_url=f"sqlite:///{tmp_path / 'recon.db'}")
    c = Console(settings, clock=FakeClock(START))
    yield c
    c.close()


def kinds(console: Console) -> list[str]:
    return sorted(e.kind.value for e in console.alerts.events())


def test_a_closed_month_gives_one_month_final_event(console: Console) -> None:
    console.start_batch("2025-06", districts=["1", "2"])
    console.batch.run(until_idle=True)
    assert console.alerts.evaluate_months() == 1
    assert console.alerts.evaluate_months() == 0  # nothing new finished
    [final] = console.alerts.events(kinds=["month-final"])
    assert final.month == "2025-06" and final.payload["districts"] == 2
    assert set(final.payload["by_reason"]) <= {"closing-ended", "stable", "window-reached"}
    assert console.alerts.emit(month_final_event(console, "2025-06")) is False  # same run: once


def test_a_failed_job_is_an_event_and_its_month_is_not_final(console: Console) -> None:
    jobs = console.reconciler.start_month("2025-06", ["1", "2"], mode="optimized")
    console.reconciler.replay(jobs[0].id)
    console.reconciler.fail(jobs[1].id, "ParseError: exports/2025-07-01/clubperformance_2.csv")
    [failed] = console.alerts.events(kinds=["job-failed"])
    assert (failed.district, failed.job_id) == ("2", jobs[1].id)
    assert failed.payload["error"].startswith("ParseError")
    assert console.alerts.evaluate_months() == 0
    assert month_final_event(console, "2025-06") is None


def test_a_significant_change_after_a_stable_day_is_a_late_revision(console: Console) -> None:
    [job] = console.reconciler.start_month("2025-06", ["1"], mode="optimized")
    day = date(2025, 7, 3)
    steady = replace(
        job, status=JobStatus.ACTIVE, last_check_date=day, checks=3, stable_days=1,
        significant_changes=1,
    )  # fmt: skip
    console.alerts.observe(steady)
    revised = replace(
        steady, last_check_date=day + timedelta(days=1), checks=4, stable_days=0,
        significant_changes=2, last_significant_as_of=day,
    )  # fmt: skip
    console.alerts.observe(revised)
    assert console.alerts.events() == []  # queued: a check does no I/O for it
    console.alerts.observe(revised)  # written again (a flush): the same occurrence
    assert console.alerts.store_queued() == 1
    [late] = console.alerts.events(kinds=["late-revision"])
    assert late.payload["why"] == "after-stable" and late.payload["as_of"] == "2025-07-03"


def test_the_watcher_missing_two_ticks_is_one_event(console: Console) -> None:
    last = START - timedelta(hours=30)
    alerts = console.alerts
    assert not alerts.watcher_missed_ticks(watcher="host:1", last_tick=last, every_s=86_400)
    last = START - timedelta(hours=49)
    assert alerts.watcher_missed_ticks(watcher="host:1", last_tick=last, every_s=86_400)
    assert not alerts.watcher_missed_ticks(watcher="host:1", last_tick=last, every_s=86_400)
    [missed] = alerts.events()
    assert missed.kind is EventKind.WATCHER_MISSED_TICKS and missed.payload["missed"] == 2


def test_a_stored_watcher_that_stopped_ticking_raises_the_event(console: Console) -> None:
    status = SqlWatcherStatus(console.storage)
    running = WatcherStatus(
        name=WATCHER_LEASE, holder="h:1:x", host="h", pid=1, source="sim", started_at=START,
        last_tick_at=START - timedelta(hours=1), next_tick_at=START + timedelta(hours=1),
    )  # fmt: skip
    status.save(running)
    assert not console.alerts.evaluate_watcher(), "ticking on time"
    status.save(replace(running, last_tick_at=START - timedelta(hours=5),
                        next_tick_at=START - timedelta(hours=3)))  # fmt: skip
    assert console.alerts.evaluate_watcher()
    status.save(replace(running, stopped_at=START))  # stopped cleanly: no watcher to miss
    console.alerts.store_queued()
    assert kinds(console) == ["watcher-missed-ticks"]
    assert not console.alerts.evaluate_watcher()


def test_six_cache_reads_give_no_alert_two_hundred_misses_give_one(console: Console) -> None:
    for key in range(6):
        console.cache.get_or_load("jobs", key, lambda: None)
    assert perf_figures(console).cache_misses == 6
    assert console.alerts.evaluate_performance() == 0
    for key in range(6, 206):
        console.cache.get_or_load("jobs", key, lambda: None)
    assert console.alerts.evaluate_performance() == 1
    assert console.alerts.evaluate_performance() == 0  # still low: the same occurrence
    [alert] = console.alerts.events()
    assert alert.kind is EventKind.CACHE_HIT_RATE and alert.payload["reads"] == 206
