"""Helpers shared by the monitor's tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.monitor.core import Bottleneck, Monitor, OperationStats
from engine.monitor.resources import RESOURCE_FIELDS
from engine.store.perf import SqlPerfStore

MakeMonitor = Callable[..., Monitor]
MakeStore = Callable[[], SqlPerfStore]


class Reader:
    """A resource reader returning set figures (psutil's stand-in where values must be exact)."""

    def __init__(self, **values: float) -> None:
        self.values = {name: 1.0 for name in RESOURCE_FIELDS} | values
        self.calls = 0
        self.called = threading.Event()

    def __call__(self) -> Mapping[str, float]:
        self.calls += 1
        self.called.set()
        return dict(self.values)


def only(monitor: Monitor, operation: str, **kwargs: Any) -> OperationStats:
    (found,) = monitor.stats(operation=operation, **kwargs)
    return found


def fired(monitor: Monitor, operation: str, rule: str, **kwargs: Any) -> Bottleneck | None:
    found = [b for b in monitor.bottlenecks(**kwargs) if (b.operation, b.rule) == (operation, rule)]
    assert len(found) <= 1
    return found[0] if found else None


def record_ms(
    monitor: Monitor, operation: str, durations_ms: Sequence[float], failures: int = 0
) -> None:
    for i, ms in enumerate(durations_ms):
        monitor.record(operation, ms / 1000, error="SourceError" if i < failures else None)


def categories(monitor: Monitor) -> dict[str, str]:
    return {r.category: r.priority for r in monitor.recommendations()}
