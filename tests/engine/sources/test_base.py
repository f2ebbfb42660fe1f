"""The shared export-source base: one summary fetch per day, loaded in the background."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pytest

from engine.cancel import NEVER
from engine.errors import SourceError
from engine.sources.base import _SummaryCache
from engine.sources.http import HttpSource
from engine.sources.sim import (
    SimulatorServer,
)
from tests.engine.sources.common import MONTH


@pytest.mark.parametrize(("share", "expected"), [(True, 1), (False, 6)])
def test_shared_summary_is_fetched_once_per_day(
    server: SimulatorServer, share: bool, expected: int
) -> None:
    http = HttpSource(server.url, timeout_s=10, share_summary=share)
    day = date(2025, 4, 3)
    errors: list[BaseException] = []

    def check(district: str) -> None:
        try:
            http.fetch(district, MONTH, day)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [
            threading.Thread(target=check, args=(d,)) for d in ("1", "2", "3", "4", "F", "U")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert server.requests("districtsummary") == expected
        assert server.requests("clubperformance") == 6
        http.fetch("42", MONTH, day + timedelta(days=1))
        assert server.requests("districtsummary") == expected + 1
    finally:
        http.close()


def test_a_summary_started_in_the_background_is_loaded_once_and_awaited() -> None:
    cache = _SummaryCache()
    release = threading.Event()
    loads: list[str] = []
    export = object()

    def load() -> Any:
        loads.append(threading.current_thread().name)
        release.wait(10)
        return export

    key = (MONTH, date(2025, 4, 1))
    cache.start(key, load, NEVER)
    cache.start(key, load, NEVER)  # already loading: no second load
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(cache.get(key, load, NEVER)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # waits for the background load
    release.set()
    waiter.join(10)
    assert got == [export] and loads == ["summary-load"]
    cache.start(key, load, NEVER)  # loaded: nothing to do
    assert cache.get(key, load, NEVER) is export and len(loads) == 1


def test_a_failed_background_load_is_fetched_again_by_the_caller() -> None:
    cache = _SummaryCache()
    calls: list[str] = []

    def load() -> Any:
        calls.append(threading.current_thread().name)
        raise SourceError("HTTP 503", transient=True)

    key = (MONTH, date(2025, 4, 1))
    cache.start(key, load, NEVER)
    with pytest.raises(SourceError, match="503"):
        cache.get(key, load, NEVER)
    assert calls == ["summary-load", threading.current_thread().name]
