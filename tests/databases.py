"""Databases for tests that run on both backends: a SQLite file, or a fresh
database on one throwaway PostgreSQL server shared by the whole session
(tests/postgres.py; started the first time a PostgreSQL test asks for it).

Fixtures (in tests/conftest.py): ``pg_server`` (the server's URL), ``db_url``
(parametrized ``sqlite`` / ``postgres``: a new, empty database per test), and
``new_db_url`` (a factory of more empty databases of the test's backend)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from engine.store.pg import create_database, drop_database
from tests.postgres import postgres_server

BACKENDS = ["sqlite", "postgres"]
_names = itertools.count()

NewUrl = Callable[[], str]


def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def new_databases(
    backend: str, folder: Path, request: pytest.FixtureRequest, stack: ExitStack
) -> NewUrl:
    """A factory of new, empty databases of ``backend``, dropped when ``stack`` closes."""

    def new() -> str:
        n = next(_names)
        if backend == "sqlite":
            return f"sqlite:///{folder / f'recon{n}.db'}"
        pg = request.getfixturevalue("pg_server")
        name = f"recon_test_{os.getpid()}_{n}"
        url = create_database(pg, name)
        stack.callback(drop_database, pg, name)
        return url

    return new


def backend_of(url: str) -> str:
    return "postgres" if url.startswith("postgresql") else "sqlite"


@contextmanager
def closed_to_connections(url: str) -> Iterator[None]:
    """The PostgreSQL database of ``url`` refuses new connections for the block and
    its open sessions are cut (a database out of reach)."""
    name = make_url(url).database
    admin = psycopg.connect(_dsn(url, "postgres"), autocommit=True)
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)
