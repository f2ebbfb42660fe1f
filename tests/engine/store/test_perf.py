"""SqlPerfStore on a real SQLite file, in both storage modes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.app.console import open_storage
from engine.errors import StorageError
from engine.monitor.resources import RESOURCE_FIELDS
from engine.settings import StorageSettings
from engine.store.perf import PerfInterval, ResourceSample, SqlPerfStore
from engine.store.storage import Storage

NOW = datetime(2025, 7, 3, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def row(start: float, end: float, operation: str = "parse", p50_ms: float = 1.0) -> PerfInterval:
    return PerfInterval(
        interval_start=at(start),
        interval_end=at(end),
        process="host:1",
        operation=operation,
        calls=2,
        failures=1,
        total_ms=4.0,
        min_ms=1.0,
        max_ms=3.0,
        p50_ms=p50_ms,
        p95_ms=3.0,
        p99_ms=3.0,
        errors={"KeyError": 1},
        sketch={0: 1, 55: 1},
    )


def sample(seconds: float, **gauges: float) -> ResourceSample:
    values = {name: float(i) for i, name in enumerate(RESOURCE_FIELDS)} | gauges
    return ResourceSample(at(seconds), "host:1", values)


@pytest.fixture(params=["naive", "optimized"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    url = f"sqlite:///{tmp_path / 'perf.db'}"
    s = open_storage(StorageSettings(db_url=url, mode=request.param))
    yield s
    s.close()


def test_intervals_and_samples_read_back_as_written(storage: Storage) -> None:
    store = SqlPerfStore(storage)
    assert store.history_start() is None
    store.add_intervals([row(0, 10), row(10, 20, operation="source.fetch")])
    store.add_samples([sample(5, cache_hit_rate=0.9), sample(15)])
    store.flush()
    first, second = store.intervals(after=at(0))
    assert first == replace(row(0, 10), id=first.id)
    assert first.interval_start.tzinfo == UTC and second.operation == "source.fetch"
    assert [r.operation for r in store.intervals(after=at(0), until=at(10))] == ["parse"]
    assert [r.operation for r in store.intervals(after=at(0), operation="source.fetch")] == [
        "source.fetch"
    ]
    assert store.samples(after=at(0)) == [sample(5, cache_hit_rate=0.9), sample(15)]
    assert store.sample_span(after=at(0), until=at(10)) == (at(5), at(5))
    assert store.sample_span(after=at(20), until=at(30)) is None
    assert store.history_start() == at(0)
    store.add_samples([sample(-3)])
    store.flush()
    assert store.history_start() == at(-3)


def test_prune_and_latency(storage: Storage) -> None:
    store = SqlPerfStore(storage)
    store.add_intervals([row(0, 10, p50_ms=1.0), row(10, 20, p50_ms=3.0)])
    store.add_samples([sample(5), sample(15)])
    store.flush()
    (point,) = store.latency(after=at(0), operations=["parse"], max_points=1)
    assert (point.operation, point.p50_ms, point.calls) == ("parse", 2.0, 4)
    assert store.latency(after=at(0), operations=["cache.get"], max_points=1) == []
    store.prune(at(12))
    assert [r.interval_end for r in store.intervals(after=at(0))] == [at(20)]
    assert store.samples(after=at(0)) == [sample(15)]


def test_read_errors_are_storage_errors(storage: Storage) -> None:
    store = SqlPerfStore(storage)
    with storage.transaction("drop") as conn:
        conn.exec_driver_sql("DROP TABLE perf_resources")
    with pytest.raises(StorageError, match="perf history"):
        store.samples(after=at(0))
