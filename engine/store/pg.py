"""PostgreSQL's own parts: databases made and dropped on a server, and the
LISTEN/NOTIFY channel that tells other processes a transaction committed changes.

**Databases.** :func:`create_database` and :func:`drop_database` make and drop a
database beside the one a URL names (on the same server, with the same user);
:func:`scratch_database` is one for the length of a block (benchmarks, tests).

**Notifications.** A writer's ``changes`` row is followed, in the same
transaction, by ``pg_notify(CHANNEL, writer)`` (:func:`notify`): PostgreSQL
delivers it to every listening session when, and only if, the transaction
commits. :class:`Listener` holds one such session (psycopg, autocommit) and
:meth:`Listener.wait` returns as soon as a notification from another writer
arrives, or at its timeout. A lost connection is reopened at the next wait; a
notification missed meanwhile is still caught by the change feed's poll.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from engine.errors import StorageError
from engine.store.urls import safe_url

CHANNEL = "recon_changes"
"""The channel every writer notifies and every listener listens on."""

_names = itertools.count()


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    try:
        return make_url(url).get_backend_name() == "postgresql"
    except Exception:  # noqa: BLE001 - not a URL: not PostgreSQL (parse_url says why)
        return False


def sibling_url(url: str, name: str) -> str:
    """The URL of the database ``name`` on the server of ``url``."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def create_database(url: str, name: str) -> str:
    """Create the database ``name`` on the server of ``url``; its URL."""
    _admin(url, "CREATE DATABASE {}", name)
    return sibling_url(url, name)


def drop_database(url: str, name: str) -> None:
    """Drop the database ``name`` on the server of ``url``, closing its sessions."""
    _admin(url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


@contextlib.contextmanager
def scratch_database(url: str, prefix: str = "recon_scratch") -> Iterator[str]:
    """A new, empty database on the server of ``url`` for the block; dropped after."""
    name = f"{prefix}_{os.getpid()}_{next(_names)}_{int(time.time() * 1000) % 10**9}"
    scratch = create_database(url, name)
    try:
        yield scratch
    finally:
        drop_database(url, name)


def _admin(url: str, statement: str, name: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(statement.format(quoted)))
    except SQLAlchemyError as exc:
        raise StorageError("admin", f"{safe_url(url)}: {exc}") from exc
    finally:
        engine.dispose()


def notify(conn: Connection, writer: str) -> None:
    """Notify :data:`CHANNEL` in ``conn``'s transaction (delivered at its commit)."""
    conn.execute(
        text("SELECT pg_notify(:channel, :writer)"), {"channel": CHANNEL, "writer": writer}
    )


class Listener:
    """One session listening on :data:`CHANNEL`; wakes on other writers' commits.

    Args:
        url: the SQLAlchemy URL of the database.
        own: this process's writer name: its own notifications do not wake it.
    """

    def __init__(self, url: str, *, own: str) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._own = own
        self._conn: Any = None  # a psycopg connection (psycopg: the ``postgres`` extra)
        self._lock = threading.Lock()  # one waiter at a time
        self._closing = threading.Event()
        self.received = 0  # notifications from other writers (a statistic)

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for another writer's notification; whether one came.

        Connects (and listens) first if it is not: ``wait(0)`` just connects. A failed
        connection is dropped (reopened at the next call) and counts as no
        notification: the caller's poll still runs. :meth:`close` ends a wait early."""
        import psycopg

        end = time.monotonic() + timeout_s
        with self._lock:
            try:
                conn = self._connect()
                while not self._closing.is_set() and (left := end - time.monotonic()) > 0:
                    for found in conn.notifies(timeout=min(left, _SLICE_S)):
                        if found.payload != self._own:
                            self.received += 1
                            return True
            except psycopg.Error:
                self._drop()
            return False

    def _connect(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
            conn.execute(f"LISTEN {CHANNEL}")
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """End a wait in progress and close the session (the next wait opens one)."""
        self._closing.set()
        with self._lock:
            self._drop()
            self._closing.clear()


_SLICE_S = 0.25  # a wait checks this often whether it is asked to end


__all__ = [
    "CHANNEL",
    "Listener",
    "create_database",
    "drop_database",
    "is_postgres",
    "notify",
    "scratch_database",
    "sibling_url",
]
