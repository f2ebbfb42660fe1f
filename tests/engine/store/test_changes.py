"""The changes table and its feed: written with the data, read by other writers only,
in commit order even when sequence numbers are not (the pure Cursor), pruned."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.app.console import open_storage
from engine.domain.models import JobStatus, Snapshot, TimelineEntry
from engine.errors import StorageError
from engine.settings import StorageSettings
from engine.store import changes as changes_module
from engine.store.changes import HOLE_GRACE_S, KEEP, NO_CHANGES, ChangeFeed, Changes, Cursor
from engine.store.pg import scratch_database
from engine.store.schema import changes, perf_resources
from engine.store.storage import Storage

MONTH = "2025-06"
NOW = datetime(2025, 7, 2, tzinfo=UTC)


@pytest.fixture(params=["naive", "optimized"])
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Storage, Storage]]:
    """A writer and a reader storage on one SQLite file (as two processes have)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    writer = open_storage(StorageSettings(db_url=url, mode=request.param))
    other = open_storage(StorageSettings(db_url=url, mode=request.param))
    yield writer, other
    writer.close()
    other.close()


def rows(storage: Storage) -> int:
    with storage.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(changes)).scalar_one())


def test_each_kind_of_write_reaches_other_writers_feeds_not_its_own(
    pair: tuple[Storage, Storage],
) -> None:
    writer, other = pair
    theirs, mine = ChangeFeed(other.database), ChangeFeed(writer.database)
    jobs = writer.create_run(MONTH, ["1", "2"], mode="naive", source="test")
    assert theirs.poll() == Changes(months=frozenset({MONTH}))

    first = jobs[0]
    entry = TimelineEntry(first.id, date(2025, 7, 1), NOW, MONTH, {"membership": 5}, (), True)
    snap = Snapshot("1", date(2025, 7, 1), MONTH, {"membership": 5.0}, "month-end")
    writer.save_progress(replace(first, checks=1), entry, snap)
    writer.flush()
    assert theirs.poll() == Changes(frozenset({first.id}), frozenset({MONTH}))

    writer.transition(replace(jobs[1], status=JobStatus.CANCELLED))
    assert theirs.poll() == Changes(frozenset({jobs[1].id}), frozenset({MONTH}))
    assert theirs.poll() == NO_CHANGES  # read once
    assert mine.poll() == NO_CHANGES  # its own writes: invalidated where they were made


def test_only_committed_job_writes_leave_a_row(pair: tuple[Storage, Storage]) -> None:
    writer, other = pair
    job = writer.create_run(MONTH, ["1"], mode="naive", source="test")[0]
    feed, before = ChangeFeed(other.database), rows(writer)
    with pytest.raises(StorageError), writer.transaction("doomed") as conn:
        changes_module.note(conn, job_ids=[job.id], months=[MONTH])
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    writer.write(perf_resources, [])  # not a job write: nothing noted
    writer.transition(replace(job, status=JobStatus.CANCELLED))  # the connection is reused
    assert rows(writer) == before + 1
    assert feed.poll() == Changes(frozenset({job.id}), frozenset({MONTH}))


def test_old_rows_are_pruned_and_a_feed_behind_them_sees_everything(
    pair: tuple[Storage, Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes_module, "KEEP", 4)
    monkeypatch.setattr(changes_module, "PRUNE_EVERY", 3)
    writer, other = pair
    job = writer.create_run(MONTH, ["1"], mode="naive", source="test")[0]
    feed = ChangeFeed(other.database)
    for n in range(1, 10):
        writer.transition(replace(job, checks=n))
    assert rows(writer) <= 4 + 3
    assert feed.poll() == Changes(everything=True)
    writer.transition(replace(job, checks=10))
    assert feed.poll() == Changes(frozenset({job.id}), frozenset({MONTH}))


# --- the cursor (pure) ---------------------------------------------------------------


def row(
    seq: int, writer: str = "them", jobs: str = "", months: str = ""
) -> tuple[int, str, str, str]:
    return (seq, writer, jobs, months)


def test_cursor_reads_on_from_its_mark_and_skips_its_own_writer() -> None:
    cursor = Cursor(mark=10)
    assert cursor.low() == 10
    found = cursor.take(
        [row(11, jobs="1,2", months=MONTH), row(12, "me", jobs="3")], own="me", now=0
    )
    assert found == Changes(frozenset({1, 2}), frozenset({MONTH}))
    assert (cursor.mark, cursor.low()) == (12, 12)
    assert cursor.take([], own="me", now=1) == NO_CHANGES


def test_cursor_reads_a_number_committed_late_once_it_appears() -> None:
    """PostgreSQL: transaction 12 commits before 11; 11 is read when it commits."""
    cursor = Cursor(mark=10)
    assert cursor.take([row(12, jobs="2")], own="me", now=0) == Changes(frozenset({2}))
    assert cursor.low() == 10  # 11 is read again
    assert cursor.take([row(12, jobs="2")], own="me", now=1) == NO_CHANGES  # not twice
    assert cursor.take([row(11, jobs="1"), row(12, jobs="2")], own="me", now=2) == Changes(
        frozenset({1})
    )
    assert cursor.low() == 12


def test_cursor_gives_up_a_hole_after_the_grace_and_starts_over_when_behind() -> None:
    cursor = Cursor(mark=0)
    cursor.take([row(2)], own="me", now=0)
    assert cursor.low() == 0
    cursor.take([row(2)], own="me", now=HOLE_GRACE_S + 1)  # 1 rolled back: never comes
    assert cursor.low() == 2
    assert cursor.take([row(KEEP + 3)], own="me", now=0) == Changes(everything=True)
    assert cursor.low() == KEEP + 3


# --- PostgreSQL: the same code ---------------------------------------------------------


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A new database on the session's PostgreSQL server."""
    with scratch_database(pg_server, prefix="recon_changes") as url:
        yield url


def test_the_feed_on_postgres(pg_url: str) -> None:
    writer = open_storage(StorageSettings(db_url=pg_url, mode="optimized"))
    other = open_storage(StorageSettings(db_url=pg_url, mode="optimized"))
    try:
        feed = ChangeFeed(other.database)
        job = writer.create_run(MONTH, ["1"], mode="optimized", source="test")[0]
        writer.transition(replace(job, status=JobStatus.CANCELLED))
        assert feed.poll() == Changes(frozenset({job.id}), frozenset({MONTH}))
        assert feed.poll() == NO_CHANGES
        assert ChangeFeed(writer.database).poll() == NO_CHANGES
    finally:
        writer.close()
        other.close()
