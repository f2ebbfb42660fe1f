"""Alert events on a real SQLite file: once per key, claimed for delivery, kept across opens."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.store.database import Database
from engine.store.events import EventKind, NewEvent, SqlEventStore
from engine.store.migrate import SCHEMA_VERSION

NOW = datetime(2025, 7, 1, 12, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'events.db'}")
    yield database
    database.close()


def failed(job_id: int, month: str = "2025-06") -> NewEvent:
    return NewEvent(
        key=f"job-failed:{job_id}",
        kind=EventKind.JOB_FAILED,
        month=month,
        district=str(job_id),
        job_id=job_id,
        payload={"error": "boom", "attempts": 3},
    )


def test_an_event_is_stored_once_per_key(db: Database) -> None:
    store = SqlEventStore(db)
    assert store.add(failed(1), NOW) is True
    assert store.add(failed(1), NOW + timedelta(hours=1)) is False
    [event] = store.find()
    assert (event.kind, event.month, event.district, event.job_id) == (
        EventKind.JOB_FAILED, "2025-06", "1", 1,
    )  # fmt: skip
    assert event.payload == {"error": "boom", "attempts": 3}
    assert event.created_at == NOW and event.delivered_at is None and event.attempts == 0


def test_find_filters_by_month_and_kind_newest_first(db: Database) -> None:
    store = SqlEventStore(db)
    store.add(failed(1), NOW)
    store.add(failed(2, "2025-07"), NOW)
    store.add(
        NewEvent(key="month-final:2025-06:1", kind=EventKind.MONTH_FINAL, month="2025-06"), NOW
    )
    assert [e.key for e in store.find(month="2025-06")] == ["month-final:2025-06:1", "job-failed:1"]
    assert [e.job_id for e in store.find(kinds=["job-failed"])] == [2, 1]
    assert store.find(month="2025-05") == []


def test_a_claimed_event_is_held_until_its_lease_ends(db: Database) -> None:
    store = SqlEventStore(db)
    store.add(failed(1), NOW)
    [claimed] = store.claim(NOW, NOW + timedelta(seconds=40), limit=5)
    assert store.claim(NOW, NOW + timedelta(seconds=40), limit=5) == []  # held
    # A process that died while posting: the lease runs out and the event is due again.
    assert [e.id for e in store.claim(NOW + timedelta(seconds=41), NOW, limit=5)] == [claimed.id]


def test_failures_count_attempts_and_schedule_the_retry_then_delivery_ends_it(
    db: Database,
) -> None:
    store = SqlEventStore(db)
    store.add(failed(1), NOW)
    [event] = store.claim(NOW, NOW + timedelta(seconds=40), limit=1)
    store.failed(event.id, "webhook http://127.0.0.1:9: ConnectError", NOW + timedelta(seconds=2))
    [stored] = store.find()
    assert stored.attempts == 1 and "ConnectError" in (stored.last_error or "")
    assert stored.next_attempt_at == NOW + timedelta(seconds=2)
    assert store.claim(NOW + timedelta(seconds=1), NOW, limit=1) == []  # not due yet
    [again] = store.claim(NOW + timedelta(seconds=2), NOW + timedelta(seconds=60), limit=1)
    store.delivered(again.id, NOW + timedelta(seconds=3))
    [done] = store.find()
    assert done.delivered and done.attempts == 2 and done.next_attempt_at is None
    assert store.claim(NOW + timedelta(days=1), NOW + timedelta(days=2), limit=1) == []


def test_events_survive_reopening_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = Database(url)
    SqlEventStore(first).add(failed(1), NOW)
    first.close()
    second = Database(url)
    try:
        assert [e.key for e in SqlEventStore(second).find()] == ["job-failed:1"]
    finally:
        second.close()


def test_a_schema_1_database_gets_the_events_table(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    Database(f"sqlite:///{path}").close()
    with closing(sqlite3.connect(path)) as conn:  # as schema 1 left it: no events table
        conn.execute("DROP TABLE events")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    database = Database(f"sqlite:///{path}")
    try:
        assert SqlEventStore(database).add(failed(1), NOW)
    finally:
        database.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
