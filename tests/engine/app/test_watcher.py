"""The watcher, one tick at a time with a fake clock on a real database (SQLite and
PostgreSQL: ``backend``): a whole closing period on the simulator from month end
to the last final job, with and without a restart half way; gaps of a live source;
districts that appear later. The uninterrupted reference runs once, on SQLite:
a run on PostgreSQL must end in the same state."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from engine.app import queries
from engine.app.console import Console
from engine.app.watcher import WATCHER_LEASE, TickReport, Watcher, start_embedded
from engine.clock import FakeClock
from engine.settings import Settings
from engine.sources.sim import Simulator
from engine.sources.sim.folder import export_folder
from engine.store.leases import Holder
from engine.store.schema import timeline
from engine.store.watcher import SqlWatcherStatus
from tests.databases import closed_to_connections
from tests.reliability.state import compare, dump

MONTH = "2025-05"
CLOSING = date(2025, 6, 6)  # May 2025's last closing collection (calendar file below)
DISTRICTS = ("1", "2", "F")
FIRST_DAY = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)  # the first collection after month end
DAY_S = 86_400.0


def make_console(tmp_path: Path, db: str, clock: FakeClock, **source: Any) -> Console:
    """A console on the database ``db`` (a URL)."""
    calendar = tmp_path / "calendar.json"
    calendar.write_text(json.dumps({MONTH: CLOSING.isoformat()}))
    settings = Settings().with_values("storage", db_url=db)
    return Console(
        settings.with_values("source", calendar_file=str(calendar), **source), clock=clock
    )


ATTEMPTS = ("jobs.attempts",)  # how many ticks worked a job: a late start takes fewer


def state(db: str) -> dict[Any, Any]:
    """The reconciliation state, without ids and wall-clock stamps of when things ran."""
    return dump(db)


def same_state(db: str, reference: str, *, ignore: Sequence[str] = ()) -> None:
    diff = compare(state(reference), state(db), ignore=ignore)
    assert diff.none, diff.describe()


def watch_days(
    tmp_path: Path, db: str, clock: FakeClock, days: int, **kwargs: Any
) -> list[TickReport]:
    """Tick once a day for ``days`` days, in a console of its own."""
    console = make_console(tmp_path, db, clock)
    watcher = Watcher(console, districts=DISTRICTS, **kwargs)
    reports = []
    try:
        for _ in range(days):
            reports.append(watcher.tick(every_s=DAY_S))
            clock.advance(DAY_S)
    finally:
        console.close()
    return reports


def watch_to_the_end(tmp_path: Path, db: str, *, restart_after: int | None) -> list[TickReport]:
    """Watch from the first collection day until every job is final (at most 40 days)."""
    clock = FakeClock(FIRST_DAY)
    reports: list[TickReport] = []
    if restart_after is not None:
        reports += watch_days(tmp_path, db, clock, restart_after)
    while not reports or reports[-1].open_jobs:
        assert len(reports) < 40, "the close never ended"
        reports += watch_days(tmp_path, db, clock, 1)
    return reports


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[TickReport]]:
    tmp = tmp_path_factory.mktemp("straight")
    straight = f"sqlite:///{tmp / 'straight.db'}"
    console = make_console(tmp, straight, clock := FakeClock(FIRST_DAY))
    watcher = Watcher(console, districts=DISTRICTS)
    reports = []
    try:
        while not reports or reports[-1].open_jobs:
            assert len(reports) < 40, "the close never ended"
            reports.append(watcher.tick(every_s=DAY_S))
            clock.advance(DAY_S)
    finally:
        console.close()
    return f"sqlite:///{tmp / 'straight.db'}", reports


def test_a_whole_close_is_watched_from_month_end_to_the_last_final_job(
    uninterrupted: tuple[str, list[TickReport]],
) -> None:
    db, reports = uninterrupted
    first = reports[0]
    assert first.months == (MONTH,) and first.today == FIRST_DAY.date()
    assert (first.open_jobs, first.finalized, first.checks) == (3, 0, 3)  # one check each
    assert all(r.checks == r.open_jobs + (r.finalized - p.finalized)
               for p, r in zip(reports, reports[1:], strict=False))  # fmt: skip
    assert reports[-1].finalized == 3 and reports[-1].open_jobs == 0
    found = state(db)
    jobs = {k.district: v for k, v in found.items() if k.kind == "job"}
    assert {v["status"] for v in jobs.values()} == {"completed"}
    assert len([k for k in found if k.kind == "snapshot"]) == 3
    # One check per (job, collection day): no as-of date twice, `checks` counts each once.
    per_job = {district: v["checks"] for district, v in jobs.items()}
    entries: dict[str, int] = {}
    for key in found:
        if key.kind == "entry":
            entries[key.district] = entries.get(key.district, 0) + 1
    assert entries == per_job
    assert sum(r.checks for r in reports) == sum(per_job.values())


def test_a_restart_half_way_ends_in_the_same_state_as_an_uninterrupted_watch(
    tmp_path: Path, db_url: str, uninterrupted: tuple[str, list[TickReport]]
) -> None:
    straight_db, straight = uninterrupted
    reports = watch_to_the_end(tmp_path, db_url, restart_after=3)
    same_state(db_url, straight_db)
    assert [r.checks for r in reports] == [r.checks for r in straight]


def test_a_watcher_started_late_catches_the_missed_days_up(
    tmp_path: Path, db_url: str, uninterrupted: tuple[str, list[TickReport]]
) -> None:
    straight_db, straight = uninterrupted
    clock = FakeClock(FIRST_DAY)
    clock.advance(DAY_S * (len(straight) - 1))  # the first tick is on the last day
    (report,) = watch_days(tmp_path, db_url, clock, 1)
    assert report.open_jobs == 0 and report.gaps == 0
    same_state(db_url, straight_db, ignore=ATTEMPTS)


def test_a_live_source_records_missed_days_as_gaps_and_fetches_only_today(
    tmp_path: Path, db_url: str
) -> None:
    clock = FakeClock(FIRST_DAY)
    watch_days(tmp_path, db_url, clock, 1, live=True)
    clock.advance(2 * DAY_S)  # the watcher was down for two days
    (report,) = watch_days(tmp_path, db_url, clock, 1, live=True)
    assert (report.checks, report.gaps) == (3, 6)  # today's check, two missed days each
    engine = create_engine(db_url)
    with engine.connect() as conn:
        as_of = {str(r[0]) for r in conn.execute(select(timeline.c.as_of))}
    engine.dispose()
    assert as_of == {"2025-05-31", "2025-06-03"}  # nothing fetched for the missed days


def copy_day(exports: Path, folder: Path, day: str, districts: Sequence[str]) -> None:
    """Put ``day``'s club exports of ``districts`` in the watched folder (no summary:
    the folder source then lists the districts it has files of)."""
    (folder / day).mkdir(parents=True, exist_ok=True)
    for d in districts:
        name = f"clubperformance_{d}.csv"
        shutil.copy(exports / day / name, folder / day / name)


def test_a_folder_district_that_appears_later_is_added_and_missed_days_caught_up(
    tmp_path: Path, db_url: str
) -> None:
    exports, folder = tmp_path / "exports", tmp_path / "folder"
    sim = Simulator(seed=42, calendar={MONTH: CLOSING}, clock=FakeClock(datetime(2025, 7, 1)))
    list(export_folder(sim, MONTH, exports, districts=DISTRICTS))
    copy_day(exports, folder, "2025-06-01", DISTRICTS[:2])
    clock = FakeClock(FIRST_DAY)
    console = make_console(tmp_path, db_url, clock, source=str(folder))
    try:
        watcher = Watcher(console)
        first = watcher.tick()
        assert (first.open_jobs, first.checks) == (2, 2)
        for day in ("2025-06-02", "2025-06-03"):  # the watcher misses 2 June
            copy_day(exports, folder, day, DISTRICTS)
        clock.advance(2 * DAY_S)
        later = watcher.tick()
        assert later.open_jobs == 3
        # 1 and 2 catch up 2 and 3 June; F starts on 1 June, which has no file of it: a gap.
        assert (later.checks, later.gaps) == (6, 1)
        f = next(j for j in console.storage.jobs(month=MONTH) if j.district == "F")
        assert f.last_check_date == date(2025, 6, 3) and f.checks == 2
    finally:
        console.close()


def test_the_status_row_tells_other_processes_what_the_watcher_did(
    tmp_path: Path, db_url: str
) -> None:
    clock = FakeClock(FIRST_DAY)
    console = make_console(tmp_path, db_url, clock)
    try:
        watcher = Watcher(console, districts=DISTRICTS, holder=Holder("me", "here", 1))
        assert queries.watcher_view(console).running is False
        watcher.tick(every_s=3600)
        row = SqlWatcherStatus(console.storage).load(WATCHER_LEASE)
        assert row is not None
        assert (row.holder, row.ticks, row.open_jobs, row.source) == ("me", 1, 3, "sim")
        assert row.last_tick_at == FIRST_DAY
        assert row.next_tick_at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    finally:
        console.close()


def test_claim_stands_by_while_another_watcher_holds_the_lease(tmp_path: Path, db_url: str) -> None:
    clock = FakeClock(FIRST_DAY)
    first, second = (make_console(tmp_path, db_url, clock) for _ in range(2))
    try:
        one = Watcher(first, districts=DISTRICTS)
        other = Watcher(second, districts=DISTRICTS)
        stop = threading.Event()
        assert one.claim(stop)
        seen = []
        assert not other.claim(stop, on_wait=seen.append, wait=False)
        assert [r.holder for r in seen] == [one.lease.holder]
        one.close()
        assert other.claim(stop, wait=False)
        other.close()
        assert queries.watcher_view(first).running is False  # closed: the lease is free
    finally:
        first.close()
        second.close()


def test_the_watcher_goes_on_through_a_database_outage(
    tmp_path: Path, db_url: str, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server restart, as the watcher sees it: its database refuses connections for a
    while. A tick that fails is logged and tried again; the watcher does not exit."""
    if backend != "postgres":
        return  # SQLite cannot be out of reach while its file is there
    console = make_console(tmp_path, db_url, FakeClock(FIRST_DAY))
    watcher, stop, reports = Watcher(console, districts=DISTRICTS), threading.Event(), []
    assert watcher.claim(stop, wait=False)
    run = threading.Thread(
        target=watcher.run, kwargs={"every_s": 0.05, "stop": stop, "on_tick": reports.append}
    )
    run.start()
    try:
        wait_for(lambda: len(reports) >= 1)
        with closed_to_connections(db_url):
            wait_for(lambda: "the database failed this tick" in caplog.text)
            ticked = len(reports)
        wait_for(lambda: len(reports) > ticked)  # the next tick after the outage
        assert run.is_alive()
    finally:
        stop.set()
        run.join(timeout=60)
        console.close()
    assert reports[-1].open_jobs == 3 and not reports[-1].errors


def wait_for(done: Callable[[], bool], deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while not done():
        assert time.monotonic() < end, "not within the deadline"
        time.sleep(0.01)  # polling the watcher thread's progress


def test_the_dashboard_runs_its_own_watcher_unless_another_holds_the_lease(
    tmp_path: Path, db_url: str
) -> None:
    """``make run``: the dashboard's console starts a watcher thread on the simulator by
    its clock; a second dashboard on the same database shows that one and starts none."""
    clock = FakeClock(FIRST_DAY)
    first, second = (make_console(tmp_path, db_url, clock) for _ in range(2))
    try:
        halt = start_embedded(first)
        assert halt is not None
        try:
            assert start_embedded(second) is None  # the lease is held: it stands aside
            wait_for(lambda: queries.watcher_view(second).ticks >= 1)
            shown = queries.watcher_view(second)
            assert (shown.running, shown.source, shown.pid) == (True, "sim", os.getpid())
            jobs = second.jobs(MONTH)  # the month that ended by the clock, every district
            assert sorted(j.district for j in jobs) == sorted(Simulator().districts())
            assert {j.last_check_date for j in jobs} == {FIRST_DAY.date()}
        finally:
            halt()
        assert queries.watcher_view(second).running is False  # stopped: the lease is free
        again = start_embedded(second)
        assert again is not None
        again()
    finally:
        first.close()
        second.close()


def test_no_embedded_watcher_when_turned_off_or_the_source_is_not_the_simulator(
    tmp_path: Path, db_url: str
) -> None:
    clock = FakeClock(FIRST_DAY)
    off = Settings().with_values("storage", db_url=db_url).with_values("watch", embedded=False)
    folder = tmp_path / "exports"
    list(export_folder(Simulator(), MONTH, folder, districts=DISTRICTS))
    on_folder = make_console(tmp_path, db_url, clock, source=str(folder))
    consoles = [Console(off, clock=clock), on_folder]
    try:
        assert [start_embedded(c) for c in consoles] == [None, None]
        assert queries.watcher_view(consoles[0]).running is False
    finally:
        for console in consoles:
            console.close()
