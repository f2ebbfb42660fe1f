"""Alert events: stored so that none is lost across restarts, delivered at least once.

:class:`EventStore` is what :mod:`engine.notify` needs from a database;
:class:`SqlEventStore` implements it on the engine's storage (table ``events``).
An event happens once per occurrence: its ``key`` names the occurrence, and a
second :meth:`EventStore.add` of one key is ignored. Delivery claims an event
before posting it (:meth:`EventStore.claim`), so two processes sharing the
database do not post it twice while one of them is at it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, RowMapping, or_, select, update

from engine.clock import as_utc
from engine.store.bulk import dialect_insert
from engine.store.schema import events as events_table

__all__ = [
    "CLOSE_KINDS",
    "Event",
    "EventDatabase",
    "EventKind",
    "EventStore",
    "NewEvent",
    "SqlEventStore",
]


class EventKind(enum.StrEnum):
    """What happened. The close kinds concern a month; the others the engine's running."""

    MONTH_FINAL = "month-final"
    """Every job of the month's latest run completed (none failed or was cancelled)."""
    JOB_FAILED = "job-failed"
    """A job failed after its retries; the payload carries the error."""
    LATE_REVISION = "late-revision"
    """A significant change after a job had looked settled (see engine.notify.rules)."""
    WATCHER_MISSED_TICKS = "watcher-missed-ticks"
    """The watcher missed two or more of its ticks."""
    CACHE_HIT_RATE = "cache-hit-rate"
    """The cache hit rate fell below its threshold over a window with enough reads."""
    SLOW_OPERATION = "slow-operation"
    """An operation's p95 rose above its threshold."""
    MEMORY_HIGH = "memory-high"
    """Resident memory rose above its share of memoryThresholdMB."""


CLOSE_KINDS = (EventKind.MONTH_FINAL, EventKind.JOB_FAILED, EventKind.LATE_REVISION)
"""The kinds shown with a month's close; the others are shown with the performance figures."""


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event to store: what happened, once per ``key``."""

    key: str
    """Names the occurrence: a second event with the same key is the same event."""
    kind: EventKind
    month: str | None = None
    district: str | None = None
    job_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    """The details (JSON values)."""


@dataclass(frozen=True, kw_only=True)
class Event:
    """A stored event with its delivery state."""

    id: int
    key: str
    kind: EventKind
    month: str | None
    district: str | None
    job_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
    """When the webhook accepted it; None while undelivered (or no webhook is set)."""
    attempts: int
    """Deliveries tried."""
    last_error: str | None
    """Why the last delivery failed."""
    next_attempt_at: datetime | None
    """When delivery is tried next (None: at once)."""

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None


class EventStore(Protocol):
    """Where events are kept and their delivery recorded."""

    def add(self, event: NewEvent, at: datetime) -> bool:
        """Store ``event`` (committed on return); False when its key is stored already."""
        ...

    def add_all(self, events: Sequence[tuple[NewEvent, datetime]]) -> int:
        """Store events with their times in one transaction; return how many were new."""
        ...

    def claim(self, now: datetime, until: datetime, limit: int) -> list[Event]:
        """Undelivered events due at ``now``, oldest first, each held for this caller
        until ``until`` (another caller does not get it meanwhile)."""
        ...

    def delivered(self, event_id: int, at: datetime) -> None: ...

    def failed(self, event_id: int, error: str, retry_at: datetime) -> None:
        """Count a failed delivery and schedule the next one."""
        ...

    def find(
        self, *, month: str | None = None, kinds: Sequence[str] = (), limit: int = 200
    ) -> list[Event]:
        """Events, newest first, of ``month`` and of ``kinds`` when given."""
        ...


class EventDatabase(Protocol):
    """The part of :class:`engine.store.storage.Storage` that :class:`SqlEventStore` uses."""

    def transaction(self, operation: str = ...) -> AbstractContextManager[Connection]: ...

    def reading(self, operation: str = ...) -> AbstractContextManager[Connection]: ...


class SqlEventStore:
    """:class:`EventStore` on the engine's database. Every write commits at once: events
    are rare, and one that was reported must survive a crash."""

    def __init__(self, db: EventDatabase) -> None:
        self._db = db

    def add(self, event: NewEvent, at: datetime) -> bool:
        return self.add_all([(event, at)]) == 1

    def add_all(self, events: Sequence[tuple[NewEvent, datetime]]) -> int:
        if not events:
            return 0
        added = 0
        with self._db.transaction("event_add") as conn:
            stmt = dialect_insert(conn.dialect.name, events_table)
            # RETURNING says whether a row went in: PostgreSQL's rowcount of an INSERT
            # that returns its key is -1 until the rows are read
            stmt = stmt.on_conflict_do_nothing(index_elements=["key"]).returning(events_table.c.id)
            for event, at in events:  # one by one: each answers whether it was new
                added += len(conn.execute(stmt.values(_row(event, at))).all())
        return added

    def claim(self, now: datetime, until: datetime, limit: int) -> list[Event]:
        t = events_table
        due = (
            t.c.delivered_at.is_(None),
            or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
        )
        with self._db.transaction("event_claim") as conn:
            rows = list(conn.execute(select(t).where(*due).order_by(t.c.id).limit(limit)))
            if rows:
                ids = [r.id for r in rows]
                conn.execute(update(t).where(t.c.id.in_(ids)).values(next_attempt_at=until))
        return [_event(r._mapping) for r in rows]

    def delivered(self, event_id: int, at: datetime) -> None:
        t = events_table
        with self._db.transaction("event_delivered") as conn:
            conn.execute(
                update(t)
                .where(t.c.id == event_id)
                .values(delivered_at=at, attempts=t.c.attempts + 1, next_attempt_at=None)
            )

    def failed(self, event_id: int, error: str, retry_at: datetime) -> None:
        t = events_table
        with self._db.transaction("event_failed") as conn:
            conn.execute(
                update(t)
                .where(t.c.id == event_id)
                .values(attempts=t.c.attempts + 1, last_error=error[:500], next_attempt_at=retry_at)
            )

    def find(
        self, *, month: str | None = None, kinds: Sequence[str] = (), limit: int = 200
    ) -> list[Event]:
        t = events_table
        query = select(t).order_by(t.c.id.desc()).limit(limit)
        if month is not None:
            query = query.where(t.c.month == month)
        if kinds:
            query = query.where(t.c.kind.in_(list(kinds)))
        with self._db.reading("event_list") as conn:
            return [_event(r._mapping) for r in conn.execute(query)]


def _row(event: NewEvent, at: datetime) -> dict[str, Any]:
    return {
        "key": event.key[:200],
        "kind": event.kind.value,
        "month": event.month,
        "district": event.district,
        "job_id": event.job_id,
        "payload": json.dumps(event.payload, default=str),
        "created_at": at,
        "attempts": 0,
    }


def _event(row: RowMapping) -> Event:
    def utc(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return Event(
        id=row["id"],
        key=row["key"],
        kind=EventKind(row["kind"]),
        month=row["month"],
        district=row["district"],
        job_id=row["job_id"],
        payload=json.loads(row["payload"]),
        created_at=as_utc(row["created_at"]),
        delivered_at=utc(row["delivered_at"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=utc(row["next_attempt_at"]),
    )
