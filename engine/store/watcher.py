"""The watcher's status row: what the one watcher of a database last did.

The watcher (:mod:`engine.app.watcher`) writes it at start, after every tick and
when it stops; any process reads it to show whether a watcher runs, where, and
when it ticked last (Close progress, ``/healthz``, ``/metrics``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select

from engine.clock import as_utc
from engine.store.batches import Database
from engine.store.bulk import dialect_insert
from engine.store.schema import watcher_status

__all__ = ["SqlWatcherStatus", "WatcherStatus", "WatcherStatusStore"]


@dataclass(frozen=True)
class WatcherStatus:
    """One watcher's state as stored (``holder`` is its lease holder's id)."""

    name: str
    holder: str
    host: str
    pid: int
    source: str
    started_at: datetime
    last_tick_at: datetime | None = None
    next_tick_at: datetime | None = None
    ticks: int = 0
    open_jobs: int = 0
    last_error: str | None = None
    stopped_at: datetime | None = None
    period_s: float | None = None  # a periodic task's period (recon worker --watch)


class WatcherStatusStore(Protocol):
    """Where the watcher's status is kept. Each method is one transaction."""

    def save(self, status: WatcherStatus) -> None:
        """Write ``status`` over the row of its name."""
        ...

    def load(self, name: str) -> WatcherStatus | None:
        """The row of ``name``, or None when no watcher ever ran on this database."""
        ...


class SqlWatcherStatus:
    """:class:`WatcherStatusStore` on the engine's database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def save(self, status: WatcherStatus) -> None:
        values = asdict(status)
        with self._db.transaction("watcher_status_save") as conn:
            stmt = dialect_insert(conn.dialect.name, watcher_status).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[watcher_status.c.name],
                    set_={k: stmt.excluded[k] for k in values if k != "name"},
                )
            )

    def load(self, name: str) -> WatcherStatus | None:
        query = select(watcher_status).where(watcher_status.c.name == name)
        with self._db.reading("watcher_status_load") as conn:
            row = conn.execute(query).first()
        return None if row is None else _status(row)


def _status(row: Any) -> WatcherStatus:
    values = dict(row._mapping)
    for key in ("started_at", "last_tick_at", "next_tick_at", "stopped_at"):
        if values[key] is not None:
            values[key] = as_utc(values[key])
    return WatcherStatus(**values)
