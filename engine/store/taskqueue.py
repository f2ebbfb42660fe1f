"""The SQL the procrastinate runner needs besides procrastinate's own.

- :func:`ensure_schema`: procrastinate's schema on the engine's PostgreSQL
  database, applied once (under an advisory lock: two processes opening a new
  database do not both apply it).
- :class:`Slots`: the global concurrency limit. An attempt holds one of
  ``limit`` numbered slots, a PostgreSQL session advisory lock held on its own
  connection; a worker that dies loses its connection, so its slots free
  themselves. procrastinate limits concurrency per worker only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

__all__ = ["Slot", "Slots", "ensure_schema"]

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
            self._conn.execute(select(func.pg_advisory_unlock(_CLASS, self.number)))
            self._conn.commit()
        finally:
            self._conn.close()


class Slots:
    """Numbered slots shared by every process of one PostgreSQL database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def try_take(self, limit: int) -> Slot | None:
        """One free slot among the first ``limit``, or None when all are taken."""
        conn = self._engine.connect()
        try:
            for number in range(limit):
                taken = conn.execute(select(func.pg_try_advisory_lock(_CLASS, number))).scalar()
                if taken:
                    conn.commit()
                    return Slot(conn, number)
            conn.commit()
        except BaseException:
            conn.close()
            raise
        conn.close()
        return None
