"""Fixtures for the dashboard tests: a real SQLite database in tmp_path, built by the engine."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine import settings as settings_mod
from engine.app.console import Console

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
MONTH = "2025-06"
DISTRICTS = ["1", "2", "F"]


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The app's database: the dashboard reads RECON_DB_URL when it builds its engine."""
    url = f"sqlite:///{tmp_path / 'recon.db'}"
    monkeypatch.setenv("RECON_DB_URL", url)
    # No embedded watcher (it would start today's close in the test's database).
    monkeypatch.setenv("RECON_WATCH_EMBEDDED", "false")
    return url


@pytest.fixture(scope="session")
def reconciled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """June 2025 reconciled for three districts by the engine itself (built once)."""
    path = tmp_path_factory.mktemp("reconciled") / "recon.db"
    overrides = {"storage": {"db_url": f"sqlite:///{path}"}}
    console = Console(settings_mod.load(env={}, overrides=overrides))
    try:
        console.start_batch(MONTH, districts=DISTRICTS)
        console.batch.run(until_idle=True)
    finally:
        console.close()
    return path


@pytest.fixture
def populated(db_url: str, reconciled: Path) -> str:
    """The app's database: a copy of :func:`reconciled`."""
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
