"""A throwaway PostgreSQL server for tests (:mod:`engine.store.pgserver`): Debian's
binaries, a temporary data directory, 127.0.0.1 on a free port. Missing binaries
fail the test (CI installs the ``postgresql`` package), they never skip it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engine.store.pgserver import throwaway_postgres


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield the SQLAlchemy URL of its ``postgres`` database."""
    with throwaway_postgres() as server:
        yield server.url
