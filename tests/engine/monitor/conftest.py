from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.app.console import open_storage
from engine.clock import FakeClock
from engine.monitor.core import Monitor
from engine.settings import MonitorSettings, StorageSettings
from engine.store.perf import SqlPerfStore
from engine.store.storage import Storage
from tests.engine.monitor.support import MakeMonitor, MakeStore, Reader


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reader() -> Reader:
    return Reader()


@pytest.fixture
def make_store(tmp_path: Path, clock: FakeClock) -> Iterator[MakeStore]:
    """History stores on one SQLite file: each is another process's view of it."""
    made: list[Storage] = []

    def make() -> SqlPerfStore:
        url = f"sqlite:///{tmp_path / 'perf.db'}"
        storage = open_storage(StorageSettings(db_url=url), clock=clock)
        made.append(storage)
        return SqlPerfStore(storage)

    yield make
    for storage in made:
        storage.close()


@pytest.fixture
def make_monitor(clock: FakeClock, reader: Reader, make_store: MakeStore) -> Iterator[MakeMonitor]:
    # Asks for make_store so that monitors close (and flush) before their stores do.
    made: list[Monitor] = []

    def make(**kwargs: Any) -> Monitor:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("resource_reader", reader)
        monitor = Monitor(kwargs.pop("settings", MonitorSettings()), **kwargs)
        made.append(monitor)
        return monitor

    yield make
    for monitor in made:
        monitor.close()


@pytest.fixture
def monitor(make_monitor: MakeMonitor) -> Monitor:
    return make_monitor()
