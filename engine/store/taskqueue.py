"""The SQL the procrastinate runner needs besides procrastinate's own.

- :func:`ensure_schema`: procrastinate's schema on the engine's PostgreSQL
  database, applied once (under an advisory lock: two processes opening a new
  database do not both apply it).
- :class:`Slots`: the global concurrency limit. An attempt holds one of
  ``limit`` numbered slots, a PostgreSQL session advisory lock held on its own
  connection; a worker that dies loses its connection, so its slots free
  themselves. procrastinate limits concurrency per worker only. Items waiting
  for a slot take them in priority order (``slot_waiters``), so a limit below
  the workers' concurrency keeps the order procrastinate fetched them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from engine.store.schema import slot_waiters

__all__ = ["Slot", "Slots", "Waiter", "ensure_schema"]

_CLASS = 0x7265636F  # "reco": the advisory lock space of this engine
_SCHEMA_LOCK = -1  # the slot number of the lock taken while applying the schema


def ensure_schema(engine: Engine, schema_sql: str) -> bool:
    """Apply ``schema_sql`` (procrastinate's) unless its tables exist; True if applied."""
    with engine.connect() as conn, conn.begin():
        conn.execute(select(func.pg_advisory_xact_lock(_CLASS, _SCHEMA_LOCK)))
        found = conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        if found is not None:
            return False
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(schema_sql)  # no parameters: several statements in one go
        finally:
            cursor.close()
        return True


class Slot:
    """One slot taken; :meth:`release` gives it back."""

    def __init__(self, conn: Connection, number: int) -> None:
        self._conn = conn
        self.number = number

    def release(self) -> None:
        try:
            with self._conn.begin():
                self._conn.execute(select(func.pg_advisory_unlock(_CLASS, self.number)))
        finally:
            self._conn.close()


@dataclass(frozen=True)
class Waiter:
    """An item waiting for a slot: ``(priority desc, seq)`` orders the waiters."""

    item: str
    priority: int
    seq: int


class Slots:
    """Numbered slots shared by every process of one PostgreSQL database.

    Waiters take slots in priority order (then ``seq``, the job's id): one with a
    waiter ahead of it seen within ``stale_s`` seconds does not take a free slot.
    """

    def __init__(self, engine: Engine, *, stale_s: float = 2.0) -> None:
        self._engine = engine
        self._stale = timedelta(seconds=stale_s)

    def try_take(self, limit: int, waiter: Waiter) -> Slot | None:
        """One free slot among the first ``limit`` if no waiter is ahead, else None
        (``waiter`` is then recorded as waiting; :meth:`forget` when it gives up)."""
        conn = self._engine.connect()
        try:
            slot = self._take(conn, limit, waiter)
        except BaseException:
            conn.close()
            raise
        if slot is None:
            conn.close()
        return slot

    def _take(self, conn: Connection, limit: int, waiter: Waiter) -> Slot | None:
        with conn.begin():
            now = conn.execute(select(func.now())).scalar_one()
            stmt = pg_insert(slot_waiters).values(
                item=waiter.item, priority=waiter.priority, seq=waiter.seq, seen_at=now
            )
            conn.execute(stmt.on_conflict_do_update(index_elements=["item"],
                                                    set_={"seen_at": now}))  # fmt: skip
            ahead = conn.execute(
                select(func.count()).where(
                    slot_waiters.c.seen_at > now - self._stale,
                    or_(
                        slot_waiters.c.priority > waiter.priority,
                        and_(
                            slot_waiters.c.priority == waiter.priority,
                            slot_waiters.c.seq < waiter.seq,
                        ),
                    ),
                )  # fmt: skip
            ).scalar_one()
        if ahead:
            return None
        for number in range(limit):
            with conn.begin():
                taken = conn.execute(select(func.pg_try_advisory_lock(_CLASS, number))).scalar()
            if taken:
                self.forget(waiter, conn)
                return Slot(conn, number)
        return None

    def forget(self, waiter: Waiter, conn: Connection | None = None) -> None:
        """``waiter`` waits no more."""
        if conn is None:
            with self._engine.begin() as own:
                own.execute(delete(slot_waiters).where(slot_waiters.c.item == waiter.item))
            return
        with conn.begin():
            conn.execute(delete(slot_waiters).where(slot_waiters.c.item == waiter.item))
