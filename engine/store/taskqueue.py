"""The SQL the procrastinate runner needs besides procrastinate's own.

- :func:`ensure_schema`: procrastinate's schema on the engine's PostgreSQL
  database, applied once (under an advisory lock: two processes opening a new
  database do not both apply it).
- :class:`Slots`: the global concurrency limit. An attempt holds one of
  ``limit`` numbered slots, a PostgreSQL session advisory lock held on its own
  connection; a worker that dies loses its connection, so its slots free
  themselves. procrastinate limits concurrency per worker only. Waiting jobs
  take slots in procrastinate's order (priority, then job id): a job waits while
  a job ahead of it is handed to a worker and holds no slot (``slot_waiters``
  says which hold one), so a limit below the workers' concurrency keeps the order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from engine.errors import StorageError
from engine.store.schema import slot_waiters

log = logging.getLogger(__name__)

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

    def __init__(self, conn: Connection, number: int, item: str) -> None:
        self._conn = conn
        self.number = number
        self._item = item

    def release(self) -> None:
        try:
            with self._conn.begin():
                self._conn.execute(select(func.pg_advisory_unlock(_CLASS, self.number)))
                self._conn.execute(delete(slot_waiters).where(slot_waiters.c.item == self._item))
        except SQLAlchemyError:
            # The session is lost (a server restart): its advisory lock went with it,
            # and the waiter row is replaced when the item waits again.
            log.warning("slot %d of %s: session lost, released with it", self.number, self._item)
        finally:
            self._conn.close()


@dataclass(frozen=True)
class Waiter:
    """An item waiting for a slot: its procrastinate job's priority and id."""

    item: str
    priority: int
    seq: int


# procrastinate's jobs of ``task`` handed to a worker, ahead of a waiter, holding no slot.
_AHEAD = text(
    "SELECT count(*) FROM procrastinate_jobs AS j"
    " WHERE j.task_name = :task AND j.status = 'doing'"
    " AND (j.priority > :priority OR (j.priority = :priority AND j.id < :seq))"
    " AND NOT EXISTS (SELECT 1 FROM slot_waiters AS w WHERE w.seq = j.id AND w.holding)"
)


class Slots:
    """Numbered slots shared by every process of one PostgreSQL database.

    Jobs of ``task`` take slots in procrastinate's order (priority, then job id): one
    that a job ahead of it waits for (handed to a worker, holding no slot) takes none.
    """

    def __init__(self, engine: Engine, *, task: str) -> None:
        self._engine = engine
        self._task = task

    def try_take(self, limit: int, waiter: Waiter) -> Slot | None:
        """One free slot among the first ``limit`` if no job waits ahead, else None
        (``waiter`` is then recorded as waiting; :meth:`forget` when it gives up)."""
        try:
            conn = self._engine.connect()
        except SQLAlchemyError as exc:
            raise StorageError("slot", str(exc).splitlines()[0], transient=True) from exc
        try:
            slot = self._take(conn, limit, waiter)
        except SQLAlchemyError as exc:
            conn.close()
            raise StorageError("slot", str(exc).splitlines()[0], transient=True) from exc
        except BaseException:
            conn.close()
            raise
        if slot is None:
            conn.close()
        return slot

    def _take(self, conn: Connection, limit: int, waiter: Waiter) -> Slot | None:
        mine = slot_waiters.c.item == waiter.item
        with conn.begin():
            stmt = pg_insert(slot_waiters).values(item=waiter.item, seq=waiter.seq, holding=False)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["item"], set_={"seq": waiter.seq, "holding": False}
            ))  # fmt: skip
            ahead = conn.execute(
                _AHEAD, {"task": self._task, "priority": waiter.priority, "seq": waiter.seq}
            ).scalar_one()
        if ahead:
            return None
        for number in range(limit):
            with conn.begin():
                taken = conn.execute(select(func.pg_try_advisory_lock(_CLASS, number))).scalar()
                if taken:
                    conn.execute(update(slot_waiters).where(mine).values(holding=True))
            if taken:
                return Slot(conn, number, waiter.item)
        return None

    def forget(self, waiter: Waiter) -> None:
        """``waiter`` waits no more (its row stays if the database is out of reach: the
        item's next wait replaces it)."""
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(slot_waiters).where(slot_waiters.c.item == waiter.item))
        except SQLAlchemyError as exc:
            log.warning("waiter %s: not forgotten: %s", waiter.item, str(exc).splitlines()[0])
