"""Fixtures for the dashboard tests: a real database built by the engine, each test on
SQLite (a file in tmp_path) and on PostgreSQL (a database on the session's server)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from engine import settings as settings_mod
from engine.app.console import Console
from engine.store.pg import create_database, drop_database

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
MONTH = "2025-06"
DISTRICTS = ["1", "2", "F"]


@pytest.fixture
def db_url(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The app's database (tests/conftest.py's ``db_url``): the dashboard reads
    RECON_DB_URL when it builds its engine."""
    url = db_url
    monkeypatch.setenv("RECON_DB_URL", url)
    # No embedded watcher (it would start today's close in the test's database).
    monkeypatch.setenv("RECON_WATCH_EMBEDDED", "false")
    return url


def reconcile(url: str) -> None:
    """June 2025 reconciled for three districts by the engine itself, in ``url``."""
    console = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": url}}))
    try:
        console.start_batch(MONTH, districts=DISTRICTS)
        console.batch.run(until_idle=True)
    finally:
        console.close()


@pytest.fixture(scope="session")
def reconciled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`reconcile` in a SQLite file (built once)."""
    path = tmp_path_factory.mktemp("reconciled") / "recon.db"
    reconcile(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def reconciled_pg(pg_server: str) -> Iterator[str]:
    """:func:`reconcile` in a database of the PostgreSQL server (built once): its name."""
    name = "recon_reconciled"
    reconcile(create_database(pg_server, name))
    yield name
    drop_database(pg_server, name)


@pytest.fixture
def populated(db_url: str, request: pytest.FixtureRequest) -> str:
    """The app's database: a copy of the reconciled one of its backend."""
    if db_url.startswith("postgresql"):
        server, name = request.getfixturevalue("pg_server"), make_url(db_url).database
        assert name is not None
        drop_database(server, name)  # the empty one, made again as a copy
        create_database(server, name, template=request.getfixturevalue("reconciled_pg"))
        return db_url
    reconciled: Path = request.getfixturevalue("reconciled")
    target = Path(db_url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        source = reconciled.with_name(reconciled.name + suffix)
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))
    return db_url


@pytest.fixture
def app(db_url: str) -> Iterator[Callable[[str], AppTest]]:
    """Open a page of the dashboard: ``app("batch")`` runs the app, then that page."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    runs: list[str] = []

    def open_page(name: str) -> AppTest:
        if not runs:  # AppTest knows the app's pages only after a first run
            at.run()
        runs.append(name)
        at.switch_page(f"app_pages/{name}.py")
        return at.run()

    yield open_page
    st.cache_resource.clear()  # closes the engine (on_release)
