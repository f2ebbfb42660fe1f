"""Many-row writes and reads without SQLAlchemy's per-row bookkeeping.

``conn.execute(statement, dicts)`` processes every row's parameters in Python
(about 10 us a row, more than SQLite takes to write it). A :class:`Prepared`
statement is compiled once per dialect; its rows are tuples in ``names``
order, the bind processors of the statement's types (the dialect's own, e.g.
timestamps to text on SQLite) are applied column by column, and the rows go to
the DBAPI's executemany through :meth:`Connection.exec_driver_sql` (same
transaction and events), in the driver's parameter style.
On SQLite an INSERT goes as multi-row ``VALUES (...), (...)`` statements
instead: sqlite3's executemany releases and retakes the interpreter lock for
every row, which costs a thread switch per row while other threads run Python,
and a statement per row costs SQLite more too::

    UPSERT = Prepared(lambda dialect: build_statement(dialect), ("id", "name"))
    UPSERT.execute(conn, [(1, "a"), (2, "b")])

The statement binds exactly ``names``, each with an explicit ``bindparam``, in
that order: Python-side column defaults are not filled in.

:func:`raw_rows` reads a SELECT's rows as the DBAPI returns them, with its
columns' result processors applied (on SQLite, text to dates and timestamps), a
batch of rows at a time: a :class:`~sqlalchemy.engine.Row` costs more to build
than the row costs to read. :func:`raw_columns` gives each batch column by
column, for callers that build one object per row from the columns.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, Table
from sqlalchemy.dialects import postgresql, sqlite


def _null(value: None) -> None:
    return value


def bind_nulls_fast() -> None:
    """Let sqlite3 bind a None at the first step of its adapter lookup.

    sqlite3 binds a None only after looking it up in its adapter registry, then asking
    PrepareProtocol for ``__adapt__`` (an AttributeError raised and cleared), then None
    for ``__conform__``: about 1,000 instructions for each NULL, and a job's progress
    row has seven. An adapter for None that returns it as it is is found at the first
    step; what is bound does not change.

    The registry is process-wide and sqlite3 has no per-connection one, and no
    conversion before the bind can help (a NULL must reach sqlite3 as None). So this
    stays process-wide, but it is done when a SQLite database is opened (not at
    import), and it changes nothing another user of sqlite3 could see. Idempotent.
    """
    sqlite3.register_adapter(type(None), _null)


class Prepared:
    """A Core statement compiled once per dialect and run with rows as tuples.

    Args:
        build: the statement for a dialect name (upserts differ between dialects).
        names: its bind parameters, in the order of each row's values.
    """

    def __init__(self, build: Callable[[str], Any], names: Sequence[str]) -> None:
        self._build = build
        self.names = tuple(names)
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def execute(self, conn: Connection, rows: Iterable[tuple[Any, ...]]) -> None:
        """Run the statement for each row. ``rows`` is consumed a statement's worth at a
        time on SQLite, so that the rows of a large write die young (the garbage
        collector's full passes are set off by objects that live on)."""
        dialect = conn.dialect
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled.setdefault(key, self._compile(dialect))
        if found.values is None:
            params = found.convert(list(rows))
            if params:
                conn.exec_driver_sql(found.sql, params)
            return
        rows = iter(rows)
        while chunk := list(itertools.islice(rows, found.values.rows)):
            conn.exec_driver_sql(found.values.sql(len(chunk)), found.flat(chunk))

    def _compile(self, dialect: Any) -> _Compiled:
        compiled = self._build(dialect.name).compile(dialect=dialect)
        order = list(compiled.positiontup or []) if dialect.positional else list(self.names)
        processors = [
            (i, p)
            for i, name in enumerate(self.names)
            if (p := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        ]
        if order != list(self.names):  # the rows are built in ``names`` order
            raise AssertionError(f"{self.names} are not in the statement's order {order}")
        names = self.names

        def convert(rows: list[tuple[Any, ...]]) -> Any:
            if not dialect.positional:
                return [dict(zip(names, r, strict=True)) for r in _processed(rows, processors)]
            return list(_processed(rows, processors))

        def flat(rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
            return tuple(itertools.chain.from_iterable(_processed(rows, processors)))

        return _Compiled(compiled.string, convert, flat, _values(dialect, compiled, len(names)))


@dataclass(frozen=True)
class _Compiled:
    sql: str
    convert: Callable[[list[tuple[Any, ...]]], Any]  # the rows for executemany
    flat: Callable[[list[tuple[Any, ...]]], tuple[Any, ...]]  # their values in one tuple
    values: _Values | None


class _Values:
    """An INSERT's SQL around its ``VALUES`` group, to repeat the group for many rows."""

    def __init__(self, head: str, group: str, tail: str, rows: int) -> None:
        self.head, self.group, self.tail = head, group, tail
        self.rows = rows  # per statement

    def sql(self, count: int) -> str:
        return f"{self.head}{', '.join([self.group] * count)}{self.tail}"


# SQLite's oldest limit on the parameters of one statement (999 before 3.32).
_SQLITE_MAX_PARAMETERS = 999


def _values(dialect: Any, compiled: Any, width: int) -> _Values | None:
    """How to send many rows in one INSERT on SQLite; None elsewhere, or for other
    statements (rows then go through executemany)."""
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark" or not compiled.isinsert:
        return None
    sql = compiled.string
    group = f"({', '.join(['?'] * width)})"
    if sql.count(group) != 1 or sql.count("?") != width:
        return None
    head, tail = sql.split(group)
    return _Values(head, group, tail, max(1, _SQLITE_MAX_PARAMETERS // width))


def raw_rows(conn: Connection, query: Select[Any], batch: int = 100) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` as tuples, in the types its columns declare; fetched
    ``batch`` at a time, so that a long result is not held all at once."""
    for columns in raw_columns(conn, query, batch):
        yield from zip(*columns, strict=True)


def raw_columns(
    conn: Connection, query: Select[Any], batch: int = 100
) -> Iterator[list[Iterable[Any]]]:
    """The rows of ``query`` a batch at a time, each batch as one iterable per column
    (in the types the columns declare)."""
    processors = _result_processors(conn.dialect, tuple(c.type for c in query.selected_columns))
    result = conn.execute(query)
    try:
        cursor = result.cursor
        while rows := cursor.fetchmany(batch):
            yield _columns(rows, processors)
    finally:
        result.close()


def _processed(
    rows: Sequence[tuple[Any, ...]], processors: Sequence[tuple[int, Callable[[Any], Any]]]
) -> Iterable[tuple[Any, ...]]:
    """``rows`` with each ``(column index, processor)`` applied, column by column."""
    return zip(*_columns(rows, processors), strict=True) if processors else rows


def _columns(
    rows: Sequence[tuple[Any, ...]], processors: Sequence[tuple[int, Callable[[Any], Any]]]
) -> list[Iterable[Any]]:
    columns: list[Iterable[Any]] = list(zip(*rows, strict=True))
    for i, process in processors:
        columns[i] = map(process, columns[i])
    return columns


@functools.lru_cache(maxsize=64)
def _result_processors(dialect: Any, types: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """(column index, processor) of the columns whose values the dialect converts."""
    return tuple(
        (i, p)
        for i, type_ in enumerate(types)
        if (p := type_.dialect_impl(dialect).result_processor(dialect, None))
    )


def dialect_insert(dialect: str, table: Table) -> Any:
    """The dialect's own INSERT, which has ``on_conflict_do_update``."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


__all__ = ["Prepared", "bind_nulls_fast", "dialect_insert", "raw_columns", "raw_rows"]
