"""The storage contract and a month-end run on a real PostgreSQL server, the
shared database of a multi-instance deployment (same code as SQLite)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from engine.app import queries
from engine.app.console import Console
from engine.errors import StorageError
from engine.settings import Settings
from engine.store.database import Database
from engine.store.migrate import SCHEMA_VERSION, stamp_version, stored_version
from tests.engine.store.test_storage import StorageContract
from tests.postgres import postgres_server

_names = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(server: str) -> Iterator[str]:
    """A fresh database on the shared server for each test."""
    name = f"recon_test_{next(_names)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


class TestPostgresNaive(StorageContract):
    mode = "naive"

    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url


class TestPostgresOptimized(StorageContract):
    mode = "optimized"

    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url


def test_month_end_run_on_postgres(pg_url: str) -> None:
    console = Console(Settings().with_values("storage", db_url=pg_url))
    try:
        console.start_batch("2025-03", districts=["1", "2", "F"])
        console.batch.run(until_idle=True)
        rows = queries.status_rows(console, "2025-03")
        finals = console.storage.month_end_snapshots("2025-03")
    finally:
        console.close()
    assert [(r["district"], r["status"]) for r in rows] == [
        ("1", "completed"), ("2", "completed"), ("F", "completed"),
    ]  # fmt: skip
    assert sorted(finals) == ["1", "2", "F"]
    assert all(s.metrics["membership"] > 0 for s in finals.values())


def test_the_schema_version_row_on_postgres(pg_url: str) -> None:
    database = Database(pg_url)
    try:
        with database.engine.connect() as conn:
            assert stored_version(conn) == SCHEMA_VERSION
        Database(pg_url).close()  # the same version: opened as it is
        with database.transaction("stamp") as conn:
            stamp_version(conn, SCHEMA_VERSION + 1)
    finally:
        database.close()
    with pytest.raises(StorageError, match=f"newer version \\(schema {SCHEMA_VERSION + 1}; "):
        Database(pg_url)
