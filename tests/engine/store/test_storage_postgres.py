"""The storage contract and a month-end run on a real PostgreSQL server, the
shared database of a multi-instance deployment (same code as SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from engine.app import queries
from engine.app.console import Console, open_storage
from engine.errors import StorageError
from engine.settings import Settings, StorageSettings
from engine.store.database import Database
from engine.store.migrate import SCHEMA_VERSION, stamp_version, stored_version
from tests.databases import NewUrl, closed_to_connections
from tests.engine.store.test_migrate import opened_at_once
from tests.engine.store.test_storage import StorageContract


@pytest.fixture
def pg_url(new_db_url: NewUrl, backend: str) -> str:
    """A fresh database on the session's server for each test."""
    return new_db_url()


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # this module is about PostgreSQL only


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


def test_a_lost_server_is_a_transient_error_and_the_pool_recovers(pg_url: str) -> None:
    """What a server restart looks like to the engine: its sessions cut, then
    connections refused, then back. The errors are transient (the batch runner
    retries the item) and the pool replaces the dead connections (pre-ping)."""
    database = Database(pg_url)
    try:
        database.ping()  # a pooled connection, soon cut
        with closed_to_connections(pg_url):
            with pytest.raises(StorageError) as refused:
                database.ping()
            assert refused.value.transient
        database.ping()
    finally:
        database.close()


def test_processes_opening_one_new_database_at_once_all_open_it(
    new_db_url: NewUrl, backend: str
) -> None:
    """Six processes released at the same instant on a new database: each checks and
    creates the schema in turn (before the advisory lock, one of them failed on a
    duplicate table type in two rounds out of three)."""
    for round_ in range(5):
        outcomes = opened_at_once(new_db_url())
        assert outcomes == ["opened"] * 6, (round_, outcomes)


def test_an_older_database_is_migrated_in_place_on_postgres(pg_url: str) -> None:
    """A database of schema 3 (no ``changes`` table, no ``timeline.warnings``) with a
    run in it: opened, it gets both, keeps its rows and is stamped."""
    database = Database(pg_url)
    database.close()
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE changes"))
        conn.execute(text("ALTER TABLE timeline DROP COLUMN warnings"))
        stamp_version(conn, 3)
        conn.execute(
            text(
                "INSERT INTO runs (month, created_at, mode, source)"
                " VALUES ('2025-06', now(), 'naive', 'sim')"
            )
        )
    storage = open_storage(StorageSettings(db_url=pg_url, mode="naive"))
    try:
        assert [r["month"] for r in storage.runs("2025-06")] == ["2025-06"]
        with storage.engine.connect() as conn:
            assert stored_version(conn) == SCHEMA_VERSION
            columns = {c["name"] for c in inspect(conn).get_columns("timeline")}
            assert "warnings" in columns and inspect(conn).has_table("changes")
    finally:
        storage.close()
        engine.dispose()
