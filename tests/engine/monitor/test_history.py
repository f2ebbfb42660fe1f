from __future__ import annotations

import threading
from datetime import UTC, timedelta

import pytest

from engine.clock import FakeClock
from engine.errors import ConfigError
from engine.monitor.core import Monitor
from engine.settings import MonitorSettings
from tests.engine.monitor.support import MakeMonitor, MakeStore, only, record_ms

# --- history --------------------------------------------------------------------------------


def test_aggregates_persist_and_read_back_across_monitors(
    make_monitor: MakeMonitor, make_store: MakeStore, clock: FakeClock
) -> None:
    writer = make_monitor(store=make_store())
    start = clock.now()
    record_ms(writer, "source.fetch", [float(ms) for ms in range(1, 101)], failures=2)
    writer.register_gauge("cache_hit_rate", lambda: 0.9)
    writer.sample_now()
    clock.advance(10)
    writer.flush()
    record_ms(writer, "source.fetch", [500.0])
    record_ms(writer, "parse", [5.0])
    clock.advance(10)
    writer.flush()

    rows = writer.history(start - timedelta(seconds=1), operation="source.fetch")
    assert [(r.calls, r.failures) for r in rows] == [(100, 2), (1, 0)]
    first = rows[0]
    assert first.interval_start == start
    assert first.interval_end == start + timedelta(seconds=10)
    assert first.interval_start.tzinfo == UTC
    assert (first.p50_ms, first.p95_ms, first.p99_ms) == (50.0, 95.0, 99.0)
    assert first.mean_ms == pytest.approx(50.5) and first.errors == {"SourceError": 2}
    assert len(writer.history(start + timedelta(seconds=10))) == 2  # the second interval
    samples = writer.resource_history(start - timedelta(seconds=1))
    assert len(samples) == 1 and samples[0].values["cache_hit_rate"] == 0.9

    reader = make_monitor(store=make_store())  # another process: empty memory
    merged = only(reader, "source.fetch")
    assert (merged.calls, merged.failures, merged.max_ms) == (101, 2, 500.0)
    assert merged.p50_ms == pytest.approx(51, rel=0.01)  # from the merged sketches
    assert merged.p95_ms == pytest.approx(96, rel=0.01)
    assert merged.calls_per_second == pytest.approx(101 / 20)
    assert reader.report().source == "history"
    assert reader.resources().summary["cache_hit_rate"].avg == 0.9
    assert only(writer, "source.fetch", source="memory").calls == 101
    with pytest.raises(ConfigError):
        reader.stats(labels={"mode": "naive"}, source="history")
    clock.advance(180)  # idle but alive: its samples show history that it was observed
    writer.sample_now()
    writer.flush()
    assert only(reader, "source.fetch").calls_per_second == pytest.approx(101 / 200)


def test_retention_prunes_old_history(
    make_monitor: MakeMonitor, make_store: MakeStore, clock: FakeClock
) -> None:
    monitor = make_monitor(store=make_store(), settings=MonitorSettings(retention_days=2))
    start = clock.now()
    monitor.record("job.check", 0.1)
    monitor.sample_now()
    monitor.flush()
    clock.advance(3 * 86_400)
    monitor.record("job.check", 0.2)
    monitor.flush()
    rows = monitor.history(start - timedelta(days=1))
    assert [r.max_ms for r in rows] == [200.0]
    assert monitor.resource_history(start - timedelta(days=1)) == []


# --- threads --------------------------------------------------------------------------------


def test_concurrent_recording_from_8_threads(
    make_monitor: MakeMonitor, make_store: MakeStore, clock: FakeClock
) -> None:
    monitor = make_monitor(store=make_store())
    since = clock.now() - timedelta(seconds=1)
    per_thread = 2000
    barrier = threading.Barrier(9)
    done = threading.Event()

    def work(n: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            with monitor.timed("batch.item" if i % 2 else "job.check", district=str(n)):
                pass

    def read() -> None:
        barrier.wait()
        while not done.is_set():
            monitor.stats()
            monitor.flush()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    reading = threading.Thread(target=read)
    for t in [*workers, reading]:
        t.start()
    for t in workers:
        t.join()
    done.set()
    reading.join()
    monitor.flush()
    assert sum(s.calls for s in monitor.stats()) == 8 * per_thread
    assert only(monitor, "job.check", labels={"district": "3"}).calls == per_thread // 2
    persisted = monitor.history(since)
    assert sum(r.calls for r in persisted) == 8 * per_thread  # none lost, none twice


def test_latency_series_of_the_top_operations(
    make_monitor: MakeMonitor, make_store: MakeStore, clock: FakeClock
) -> None:
    monitor = make_monitor(store=make_store())
    for ms in (10.0, 30.0):
        record_ms(monitor, "source.fetch", [ms])
        record_ms(monitor, "parse", [1.0])
        clock.advance(10)
        monitor.flush()
    found = monitor.latency_series(3600, top=1)
    assert [(p.operation, p.p50_ms, p.calls) for p in found] == [
        ("source.fetch", 10.0, 1),
        ("source.fetch", 30.0, 1),
    ]
    (averaged,) = monitor.latency_series(3600, top=1, max_points=1)
    assert (averaged.at, averaged.p50_ms, averaged.p95_ms, averaged.calls) == (
        found[1].at,
        20.0,
        20.0,
        2,
    )


def test_a_monitor_without_store_has_no_history(monitor: Monitor) -> None:
    monitor.flush()  # nothing to write to: not an error
    for read in (
        lambda: monitor.stats(source="history"),
        lambda: monitor.resources(source="history"),
        lambda: monitor.history(monitor.recorder.clock.now()),
        lambda: monitor.latency_series(60),
    ):
        with pytest.raises(ConfigError, match="no storage"):
            read()


def test_a_short_runs_rate_is_over_the_window_not_over_its_own_interval(
    make_monitor: MakeMonitor, make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store()
    earlier = make_monitor(store=store)  # a process seen long before the run
    earlier.sample_now()
    earlier.flush()
    clock.advance(1000)
    run = make_monitor(store=store)  # `recon run`: a 2 s run, one interval, then it exits
    record_ms(run, "job.check", [1.0] * 100)
    clock.advance(2)
    run.flush()
    reader = make_monitor(store=store)
    assert only(reader, "job.check").calls_per_second == pytest.approx(100 / 300)
    assert only(reader, "job.check").calls == 100


def test_before_history_began_the_window_is_not_counted(
    make_monitor: MakeMonitor, make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store()
    run = make_monitor(store=store)  # the first process ever on this database
    record_ms(run, "job.check", [1.0] * 100)
    clock.advance(2)
    run.flush()
    reader = make_monitor(store=store)
    assert only(reader, "job.check").calls_per_second == pytest.approx(100 / 2)
    clock.advance(58)  # the run has ended: the window still covers the minute since it began
    assert only(reader, "job.check").calls_per_second == pytest.approx(100 / 60)
