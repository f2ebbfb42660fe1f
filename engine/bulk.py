"""Many-row writes without SQLAlchemy's per-row parameter bookkeeping.

``conn.execute(statement, rows)`` builds a parameter dictionary per row and
looks up every bind processor again (about 1 us per column and row); for the
batch runner's thousands of item rows that is most of the cost of recording
them. :func:`executemany` compiles the statement once per dialect, applies the
same bind processors (so values are stored exactly as ``conn.execute`` stores
them) and hands the rows to the driver's ``executemany`` in its own parameter
style. It works for any dialect SQLAlchemy compiles for (SQLite, PostgreSQL)::

    executemany(conn, insert(batch_items), rows)       # rows: dicts with the same keys
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cachetools
from sqlalchemy import Connection
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.dml import UpdateBase

_Plan = tuple[str, tuple[tuple[str, Callable[[Any], Any] | None], ...], bool]
_Key = tuple[UpdateBase, str, tuple[str, ...]]  # statement, dialect name, row keys
# Statements are meant to be module constants: a few plans serve every call.
_plans: cachetools.LRUCache[_Key, _Plan] = cachetools.LRUCache(64)
_plans_lock = threading.Lock()


def executemany(conn: Connection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run ``statement`` once per row, like ``conn.execute(statement, rows)``.

    The rows share their keys, and give every value the statement binds:
    Python-side column defaults are not filled in.
    """
    if not rows:
        return
    sql, binds, positional = _plan(conn, statement, tuple(rows[0]))
    if positional:
        params: list[Any] = [
            tuple(row[name] if proc is None else proc(row[name]) for name, proc in binds)
            for row in rows
        ]
    else:
        params = [
            {name: row[name] if proc is None else proc(row[name]) for name, proc in binds}
            for row in rows
        ]
    conn.exec_driver_sql(sql, params)


def _plan(conn: Connection, statement: UpdateBase, keys: tuple[str, ...]) -> _Plan:
    """The statement's SQL and its binds in driver order, compiled once per dialect."""
    cache_key = (statement, conn.dialect.name, keys)
    with _plans_lock:
        plan = _plans.get(cache_key)
    if plan is None:
        compiled = statement.compile(dialect=conn.dialect, column_keys=list(keys))
        plan = (str(compiled), _binds(compiled, conn), compiled.positional)
        with _plans_lock:
            _plans[cache_key] = plan
    return plan


def _binds(compiled: Compiled, conn: Connection) -> tuple[tuple[str, Any], ...]:
    names = compiled.positiontup if compiled.positional else list(compiled.binds)  # type: ignore[attr-defined]
    binds = compiled.binds  # type: ignore[attr-defined]
    dialect = conn.dialect
    return tuple(
        (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
    )


__all__ = ["executemany"]
