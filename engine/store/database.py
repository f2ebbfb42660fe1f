"""The database: a SQLAlchemy engine (SQLite file by default, WAL; PostgreSQL by
URL), its transactions and reads, timed and with errors as :class:`StorageError`.

Errors that a retry can cure are ``transient`` (:func:`is_transient`): SQLite's
"locked" and "busy", and on PostgreSQL a lost or refused connection (a server
restart, a network cut), a deadlock or a serialization failure. The batch runner
retries such an item instead of giving the batch up. On PostgreSQL the pool tests
a connection before handing it out (``pool_pre_ping``), so the connections a
restarted server cut are replaced, not used.

One :class:`Database` per process and URL. It opens the schema on creation
(checked, migrated or refused: see :mod:`engine.store.migrate`). Writers take
one process-wide write lock (SQLite allows one writer anyway) and, on SQLite,
the database's write lock up front (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from threading import Lock
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, insert, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from engine.errors import StorageError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.store.bulk import bind_nulls_fast
from engine.store.changes import ChangeLog
from engine.store.migrate import open_schema
from engine.store.urls import parse_url


class Database:
    """Transactions and reads on one database. Thread-safe.

    Args:
        url: a SQLAlchemy URL; a SQLite file's folder is made if missing.
        instrument: times every transaction and read as ``storage.<operation>``.
        labels: added to every timing (e.g. the storage mode, for the monitor).
    """

    def __init__(
        self,
        url: str,
        *,
        instrument: Instrument = NO_INSTRUMENT,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.roundtrips = 0  # statements sent; approximate under threads: a statistic
        self._instrument = instrument
        self._labels = dict(labels or {})
        self._write_lock = Lock()
        self._changes = ChangeLog()
        self.engine = _make_engine(url, self._count)
        try:
            open_schema(self.engine, url)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StorageError("open", f"{url}: {exc}") from exc
        except StorageError:
            self.engine.dispose()
            raise

    def _count(self, *_: object) -> None:
        self.roundtrips += 1

    @property
    def writer(self) -> str:
        """This database object's name in the ``changes`` rows it writes."""
        return self._changes.writer

    @contextlib.contextmanager
    def transaction(self, operation: str = "transaction") -> Iterator[Connection]:
        """A connection inside one transaction, committed on exit (write lock held).

        What its statements :func:`~engine.store.changes.note` is written to the
        ``changes`` table in the same transaction."""
        with self.timed(operation), self._write_lock:
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(immediate=True)
                    with conn.begin():
                        try:
                            yield conn
                        except BaseException:
                            self._changes.discard(conn)  # rolled back: its notes too
                            raise
                        self._changes.commit(conn)  # committed with the data
            except SQLAlchemyError as exc:
                raise StorageError(operation, _brief(exc), transient=is_transient(exc)) from exc

    @contextlib.contextmanager
    def reading(self, operation: str = "read", *, timed: bool = True) -> Iterator[Connection]:
        """A connection for reads (one transaction: one snapshot). Housekeeping reads
        (``timed=False``) stay out of the engine's timings."""
        with self.timed(operation) if timed else contextlib.nullcontext():
            try:
                with self.engine.connect() as conn:
                    yield conn
            except SQLAlchemyError as exc:
                raise StorageError(operation, _brief(exc), transient=is_transient(exc)) from exc

    def write(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows and commit before returning."""
        if rows:
            with self.transaction("write") as conn:
                conn.execute(insert(table), [dict(r) for r in rows])

    def ping(self) -> None:
        """Raise :class:`StorageError` unless the database answers a trivial query.

        Not timed: health probes are not engine work."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageError("ping", _brief(exc), transient=is_transient(exc)) from exc

    def timed(self, operation: str) -> contextlib.AbstractContextManager[object]:
        return self._instrument.timed(f"storage.{operation}", **self._labels)

    def close(self) -> None:
        """Close the connections (the engine's pool)."""
        self.engine.dispose()


# --- engine set-up ------------------------------------------------------------------------------

_SQLITE_BUSY_MS = 30_000  # how long a SQLite connection waits for another's lock
_PG_CONNECT_TIMEOUT_S = 10  # a server that does not answer: an error (transient), not a hang


def _make_engine(url: str, on_statement: Any) -> Engine:
    parsed = parse_url(url)  # ConfigError: not a URL, or a SQLite folder that does not exist
    try:
        backend = parsed.get_backend_name()
        engine = create_engine(
            url, connect_args=_connect_args(backend), pool_pre_ping=backend == "postgresql"
        )
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError("open", f"cannot use database URL {url!r}: {exc}") from exc
    event.listen(engine, "before_cursor_execute", on_statement)
    if engine.dialect.name == "sqlite":
        bind_nulls_fast()
        _sqlite_pragmas(engine)
    return engine


def _connect_args(backend: str) -> dict[str, Any]:
    if backend == "sqlite":
        return {"timeout": _SQLITE_BUSY_MS / 1000, "check_same_thread": False}
    if backend == "postgresql":
        return {"connect_timeout": _PG_CONNECT_TIMEOUT_S}
    return {}


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        _wal(cur)
        # FULL: a commit reaches the disk before it returns, so "committed before
        # reported" holds through a power loss too.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front so concurrent writers wait (busy_timeout)
        # instead of failing when a read transaction tries to upgrade.
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _wal(cur: Any) -> None:
    """Put the file in WAL mode (readers never block the writer).

    Two processes opening a new file at once both hold a shared lock and want the
    exclusive one to switch modes; SQLite answers one of them "locked" at once
    rather than wait (it would deadlock), so that one tries again until the other
    is done."""
    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # the other process needs milliseconds to switch the file


def _brief(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def is_transient(exc: SQLAlchemyError) -> bool:
    """Whether trying again later can succeed (see the module's docstring)."""
    brief = _brief(exc).lower()
    if "locked" in brief or "busy" in brief:
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True  # the connection was lost: a new one may work
    orig = getattr(exc, "orig", None)
    state = str(getattr(orig, "sqlstate", None) or "")
    # 08: connection exception; 40: transaction rollback (deadlock, serialization);
    # 57P01-57P03: the server shuts down, crashed, or is starting up
    if state.startswith(("08", "40", "57P0")):
        return True
    # psycopg raises OperationalError without a state when it cannot connect at all
    return isinstance(exc, OperationalError) and not state and _is_postgres_error(orig)


def _is_postgres_error(orig: object) -> bool:
    return type(orig).__module__.startswith("psycopg")


__all__ = ["Database", "is_transient"]
