from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from engine.app import queries
from engine.app.console import Console
from engine.app.months import MonthStatus, month_status
from engine.clock import FakeClock
from engine.domain.models import JobStatus
from engine.errors import ConfigError, ConflictError, SourceError
from engine.settings import Settings


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    settings = Settings().with_values("storage", db_url=f"sqlite:///{tmp_path / 'c.db'}")
    c = Console(settings.with_values("cache", prefetch_threshold=2))
    yield c
    c.close()


def wait_until(done: Callable[[], bool], timeout_s: float = 10) -> None:
    """Poll background work (the prefetch thread) until ``done()`` or the timeout."""
    end = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < end, "background work did not finish"
        time.sleep(0.01)


def run(console: Console, month: str, districts: list[str]) -> None:
    console.start_batch(month, districts=districts)
    console.batch.run(until_idle=True)


def test_a_job_read_often_prefetches_its_districts_recent_jobs(console: Console) -> None:
    for month in ("2025-01", "2025-02", "2025-03"):
        run(console, month, ["7", "8"])
    (latest,) = [j for j in console.jobs("2025-03") if j.district == "7"]
    for _ in range(3):  # past the threshold of 2 reads
        console.job(latest.id)
    wait_until(lambda: console.cache.stats().total.prefetches >= 3)
    earlier = [j for m in ("2025-01", "2025-02") for j in console.jobs(m) if j.district == "7"]
    hits_before = console.cache.stats().total.prefetch_hits
    assert [console.job(j.id).district for j in earlier] == ["7", "7"]
    assert console.cache.stats().total.prefetch_hits == hits_before + 2


def test_a_month_being_worked_cannot_be_started_twice(console: Console) -> None:
    console.start_batch("2025-03", districts=["1"])
    with pytest.raises(ConflictError, match="still working"):
        console.start_batch("2025-03", districts=["1"])
    console.batch.run(until_idle=True)
    console.start_batch("2025-03", districts=["1"])  # finished: a new run may start


# --- today: the clock bounds every run --------------------------------------------------

JUNE = "2025-06"
CLOSING = date(2025, 7, 14)  # June 2025's last closing collection (calendar file below)
TODAY = datetime(2025, 7, 20, 9, 30, tzinfo=UTC)


def dated_console(tmp_path: Path, name: str, clock: FakeClock) -> Console:
    """A console on the simulator whose June closes on :data:`CLOSING`, at ``clock``'s today."""
    calendar = tmp_path / "calendar.json"
    calendar.write_text(json.dumps({JUNE: CLOSING.isoformat()}))
    settings = Settings().with_values("storage", db_url=f"sqlite:///{tmp_path / name}")
    return Console(settings.with_values("source", calendar_file=str(calendar)), clock=clock)


def finals(console: Console) -> dict[str, tuple[object, ...]]:
    return {
        j.district: (j.status.value, j.final_as_of, queries.final_metrics(console, j))
        for j in console.jobs(JUNE)
    }


def test_a_month_that_has_not_ended_is_refused_naming_the_one_that_can_be(
    tmp_path: Path,
) -> None:
    console = dated_console(tmp_path, "c.db", FakeClock(TODAY))
    try:
        with pytest.raises(ConfigError, match="first month that can be reconciled is 2025-06"):
            console.start_batch("2025-07", districts=["1"])
        with pytest.raises(ConfigError, match=r"after today \(2025-07-20\)"):
            console.start_batch(JUNE, districts=["1"], until=date(2025, 7, 21))
        assert console.storage.runs() == []  # nothing was started
    finally:
        console.close()


def test_until_before_the_close_shows_it_as_it_stood_and_a_later_run_completes_it(
    tmp_path: Path,
) -> None:
    console = dated_console(tmp_path, "c.db", FakeClock(TODAY))
    try:
        console.start_batch(JUNE, districts=["1", "2", "F"], until=date(2025, 7, 3))
        console.batch.run(until_idle=True)
        jobs = console.jobs(JUNE)
        assert {j.status for j in jobs} == {JobStatus.ACTIVE}
        assert {j.last_check_date for j in jobs} == {date(2025, 7, 3)}
        assert max(e.as_of for j in jobs for e in console.timeline(j.id)) == date(2025, 7, 2)
        assert all(queries.final_metrics(console, j) is None for j in jobs)
        assert month_status(console, JUNE) is MonthStatus.OPEN

        console.start_batch(JUNE)  # up to today: the close is over by then
        console.batch.run(until_idle=True)
        resumed = finals(console)
    finally:
        console.close()
    assert {status for status, _, _ in resumed.values()} == {"completed"}
    assert all(metrics for _, _, metrics in resumed.values())
    straight = dated_console(tmp_path, "straight.db", FakeClock(TODAY))
    try:
        straight.start_batch(JUNE, districts=["1", "2", "F"])
        straight.batch.run(until_idle=True)
        assert finals(straight) == resumed  # stopping at 3 July changed nothing
    finally:
        straight.close()


def test_the_simulator_publishes_by_the_consoles_clock(tmp_path: Path) -> None:
    clock = FakeClock(TODAY)
    console = dated_console(tmp_path, "c.db", clock)
    try:
        assert console.source.fetch("1", JUNE, TODAY.date()).as_of == date(2025, 7, 19)
        with pytest.raises(SourceError, match="no data published yet"):
            console.source.fetch("1", JUNE, TODAY.date() + timedelta(days=1))
        clock.advance(86_400)
        tomorrow = TODAY.date() + timedelta(days=1)
        assert console.source.fetch("1", JUNE, tomorrow).as_of == TODAY.date()
    finally:
        console.close()


def test_settle_gives_jobs_the_outcome_of_their_failed_items(tmp_path: Path) -> None:
    """A job whose item failed but whose failed event has not reached it yet."""
    broken = tmp_path / "exports" / "2025-04-01"
    broken.mkdir(parents=True)
    (broken / "clubperformance_1.csv").write_text("not,an,export\n")
    settings = Settings().with_values("storage", db_url=f"sqlite:///{tmp_path / 'c.db'}")
    console = Console(settings.with_values("source", source=str(broken.parent)))
    try:
        batch_id = console.start_batch("2025-03", districts=["1"]).batch_id
        console.batch.run(until_idle=True)
        (job,) = console.storage.jobs(month="2025-03")
        # The runner's event arrives on its own: once it has, put the job back before it.
        wait_until(lambda: console.storage.get_job(job.id).status == JobStatus.FAILED)
        job = console.storage.get_job(job.id)
        assert "unknown export" in (job.error or "")
        console.storage.transition(replace(job, status=JobStatus.ACTIVE, error=None))
        console.settle(batch_id)
        settled = console.storage.get_job(job.id)
        assert (settled.status, settled.error) == (job.status, job.error)
    finally:
        console.close()
