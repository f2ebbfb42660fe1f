"""A throwaway PostgreSQL server for tests (:mod:`engine.store.pgserver`): Debian's
binaries, a temporary data directory, 127.0.0.1 on a free port. Missing binaries
fail the test (CI installs the ``postgresql`` package), they never skip it.

:func:`restart` restarts a running one on the same port (a fault: a server
restart in the middle of work)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engine.store.pgserver import PgServer, throwaway_postgres

_servers: dict[str, PgServer] = {}  # server URL -> the running server


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/", 1)[0]


def restart(url: str) -> None:
    """Restart the server of ``url`` (a URL of one of its databases) on its port:
    every session is cut (fast shutdown), and the server is back on return."""
    (server,) = [s for u, s in _servers.items() if _port(u) == _port(url)]
    server.restart()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield the SQLAlchemy URL of its ``postgres`` database."""
    with throwaway_postgres() as server:
        _servers[server.url] = server
        try:
            yield server.url
        finally:
            del _servers[server.url]
