from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.app.console import open_storage
from engine.cli.core import main
from engine.clock import FakeClock
from engine.errors import ConfigError
from engine.monitor.core import Bottleneck, Monitor, OperationStats, Thresholds, parse_window
from engine.monitor.resources import RESOURCE_FIELDS
from engine.settings import MonitorSettings, StorageSettings
from engine.store.storage import Storage

MakeMonitor = Callable[..., Monitor]


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reader() -> Reader:
    return Reader()


@pytest.fixture
def make_monitor(clock: FakeClock, reader: Reader) -> Iterator[MakeMonitor]:
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
def make_storage(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[[], Storage]]:
    made: list[Storage] = []

    def make() -> Storage:
        url = f"sqlite:///{tmp_path / 'perf.db'}"
        storage = open_storage(StorageSettings(db_url=url), clock=clock)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


@pytest.fixture
def monitor(make_monitor: MakeMonitor) -> Monitor:
    return make_monitor()


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


# --- statistics ---------------------------------------------------------------------------


def test_statistics_and_nearest_rank_percentiles(monitor: Monitor) -> None:
    record_ms(monitor, "source.fetch", [float(ms) for ms in range(100, 0, -1)], failures=5)
    s = only(monitor, "source.fetch")
    assert (s.calls, s.successes, s.failures) == (100, 95, 5)
    assert s.success_rate == 0.95
    assert s.errors == {"SourceError": 5}
    assert (s.min_ms, s.max_ms, s.total_ms) == (1.0, 100.0, 5050.0)
    assert s.mean_ms == pytest.approx(50.5)
    assert (s.p50_ms, s.p95_ms, s.p99_ms) == (50.0, 95.0, 99.0)


def test_percentiles_of_few_calls_are_observed_values(monitor: Monitor) -> None:
    record_ms(monitor, "parse", [30, 10, 20])
    record_ms(monitor, "detect", [7])
    parse = only(monitor, "parse")
    assert (parse.p50_ms, parse.p95_ms, parse.p99_ms) == (20.0, 30.0, 30.0)
    detect = only(monitor, "detect")
    assert (detect.min_ms, detect.p50_ms, detect.p99_ms, detect.max_ms) == (7.0, 7.0, 7.0, 7.0)


def test_share_of_time_and_order(monitor: Monitor) -> None:
    record_ms(monitor, "storage.write", [50, 50])
    record_ms(monitor, "source.fetch", [300])
    found = monitor.stats()
    assert [s.operation for s in found] == ["source.fetch", "storage.write"]
    assert [s.share_of_time for s in found] == [0.75, 0.25]
    assert [s.operation for s in monitor.stats(operation="storage.write")] == ["storage.write"]


def test_window_edges(monitor: Monitor, clock: FakeClock) -> None:
    monitor.record("job.check", 0.1)
    clock.advance(1)
    monitor.record("job.check", 0.2)
    clock.advance(299)  # the first call is now exactly 300 s old
    assert only(monitor, "job.check", window_s=300).calls == 1
    assert only(monitor, "job.check").max_ms == 200.0  # default window_ms is 5 minutes
    assert only(monitor, "job.check", window_s=301).calls == 2
    clock.advance(1)
    assert monitor.stats(window_s=300) == []
    with pytest.raises(ConfigError):
        monitor.stats(window_s=0)


def test_calls_per_second_counts_only_the_observed_part_of_the_window(
    make_monitor: MakeMonitor, clock: FakeClock
) -> None:
    young = make_monitor()
    clock.advance(30)
    young.record("job.check", 0.01)
    assert only(young, "job.check").calls_per_second == pytest.approx(1 / 30)
    clock.advance(5)
    young.record("job.check", 0.01)
    young.record("job.check", 0.01)
    assert only(young, "job.check").calls_per_second == pytest.approx(3 / 35)

    old = make_monitor()
    clock.advance(600)
    old.record("job.check", 0.01)
    assert only(old, "job.check").calls_per_second == pytest.approx(1 / 300)

    new = make_monitor()
    new.record("job.check", 0.01)  # no time observed yet: counted as one second
    assert only(new, "job.check").calls_per_second == 1.0


def test_timer_is_context_manager_and_decorator(monitor: Monitor) -> None:
    with monitor.timed("parse", district="12"):
        sum(range(1000))
    with pytest.raises(KeyError), monitor.timed("parse", district="12"):
        raise KeyError("x")

    @monitor.timed("detect", layer="rules")
    def detect(value: int) -> int:
        """Doubles."""
        return value * 2

    assert [detect(1), detect(2), detect(3)] == [2, 4, 6]
    assert detect.__name__ == "detect" and detect.__doc__ == "Doubles."
    parse = only(monitor, "parse")
    assert (parse.calls, parse.failures, parse.errors) == (2, 1, {"KeyError": 1})
    assert parse.min_ms > 0
    assert only(monitor, "detect").calls == 3


def test_record_failures_and_label_filter(monitor: Monitor) -> None:
    monitor.record("storage.write", 0.01, mode="naive")
    monitor.record("storage.write", 0.02, ok=False, mode="naive")
    monitor.record("storage.write", 0.001, mode="optimized")
    naive = only(monitor, "storage.write", labels={"mode": "naive"})
    assert (naive.calls, naive.failures, naive.errors) == (2, 1, {"error": 1})
    assert only(monitor, "storage.write", labels={"mode": "optimized"}).max_ms == 1.0
    assert only(monitor, "storage.write").calls == 3


def test_parse_window() -> None:
    texts = ("30s", "5m", "1h", "2d", "500ms", "90")
    assert [parse_window(t) for t in texts] == [30.0, 300.0, 3600.0, 172800.0, 0.5, 90.0]
    for bad in ("5x", "0s", "", "-1m"):
        with pytest.raises(ConfigError):
            parse_window(bad)


# --- bottleneck rules ---------------------------------------------------------------------


def test_slow_mean_rule(monitor: Monitor) -> None:
    for op, seconds in (("at", 10.0), ("above", 10.001), ("high-edge", 30.0), ("high", 30.5)):
        monitor.record(op, seconds)
    assert fired(monitor, "at", "slow-mean") is None
    above = fired(monitor, "above", "slow-mean")
    assert above is not None and above.severity == "medium"
    assert above.values["mean_s"] == pytest.approx(10.001) and above.values["threshold_s"] == 10
    edge = fired(monitor, "high-edge", "slow-mean")
    assert edge is not None and edge.severity == "medium"
    high = fired(monitor, "high", "slow-mean")
    assert high is not None and high.severity == "high" and high.recommendation


def test_success_rate_rule(monitor: Monitor) -> None:
    record_ms(monitor, "at", [1] * 20, failures=1)  # 0.95
    record_ms(monitor, "below", [1] * 20, failures=2)  # 0.90
    record_ms(monitor, "few", [1] * 10, failures=5)  # not more than 10 calls
    record_ms(monitor, "high-edge", [1] * 25, failures=5)  # 0.80
    record_ms(monitor, "high", [1] * 25, failures=6)  # 0.76
    assert fired(monitor, "at", "low-success-rate") is None
    assert fired(monitor, "few", "low-success-rate") is None
    below = fired(monitor, "below", "low-success-rate")
    assert below is not None and below.severity == "medium"
    assert below.values["success_rate"] == 0.9 and "SourceError" in below.message
    edge = fired(monitor, "high-edge", "low-success-rate")
    assert edge is not None and edge.severity == "medium"
    high = fired(monitor, "high", "low-success-rate")
    assert high is not None and high.severity == "high"


def test_tail_latency_rule(monitor: Monitor) -> None:
    record_ms(monitor, "at", [91] * 97 + [291] * 3)  # mean 97, p99 291 = 3 x mean
    record_ms(monitor, "above", [91] * 97 + [292] * 3)
    record_ms(monitor, "few", [1] * 18 + [100])  # fewer than 20 calls
    assert fired(monitor, "at", "tail-latency") is None
    assert fired(monitor, "few", "tail-latency") is None
    above = fired(monitor, "above", "tail-latency")
    assert above is not None and above.severity == "medium" and above.values["p99_ms"] == 292


def test_rare_calls_rule(make_monitor: MakeMonitor, clock: FakeClock) -> None:
    monitor = make_monitor()
    clock.advance(600)  # the whole 300 s window has been observed
    record_ms(monitor, "six", [1] * 6)  # 0.02 calls/s
    record_ms(monitor, "five", [1] * 5)
    record_ms(monitor, "at", [1] * 30)  # 0.1 calls/s
    rare = fired(monitor, "six", "rare-calls")
    assert rare is not None and rare.severity == "low"
    assert rare.values["calls_per_second"] == pytest.approx(0.02)
    assert fired(monitor, "five", "rare-calls") is None
    assert fired(monitor, "at", "rare-calls") is None


def test_time_share_rule(monitor: Monitor, make_monitor: MakeMonitor) -> None:
    record_ms(monitor, "even", [100])
    record_ms(monitor, "other", [100])
    assert fired(monitor, "even", "time-share") is None
    record_ms(monitor, "even", [2])
    big = fired(monitor, "even", "time-share")
    assert big is not None and big.values["share_of_time"] == pytest.approx(102 / 202)
    alone = make_monitor()
    record_ms(alone, "single", [100])
    assert fired(alone, "single", "time-share") is None


def test_p95_regression_rule(monitor: Monitor, clock: FakeClock) -> None:
    for op in ("at", "above", "few"):
        record_ms(monitor, op, [100] * 5)
    clock.advance(300)
    record_ms(monitor, "at", [150] * 5)
    record_ms(monitor, "above", [151] * 5)
    record_ms(monitor, "few", [500] * 4)
    assert fired(monitor, "at", "p95-regression") is None
    assert fired(monitor, "few", "p95-regression") is None
    above = fired(monitor, "above", "p95-regression")
    assert above is not None and above.values["previous_p95_ms"] == 100


def test_cache_hit_rate_rule(monitor: Monitor) -> None:
    rate = [0.8]
    monitor.register_gauge("cache_hit_rate", lambda: rate[0])
    assert fired(monitor, "cache", "cache-hit-rate") is None
    rate[0] = 0.79
    low = fired(monitor, "cache", "cache-hit-rate")
    assert low is not None and low.severity == "medium" and low.values["hit_rate"] == 0.79
    rate[0] = 0.4
    bad = fired(monitor, "cache", "cache-hit-rate")
    assert bad is not None and bad.severity == "high"
    monitor.sample_now()  # with samples in the window, their average counts
    rate[0] = 1.0
    monitor.sample_now()
    assert fired(monitor, "cache", "cache-hit-rate") is not None  # average 0.7


def test_thresholds_are_configurable(make_monitor: MakeMonitor) -> None:
    strict = make_monitor(thresholds=Thresholds(slow_mean_s=0.5))
    strict.record("parse", 0.6)
    assert fired(strict, "parse", "slow-mean") is not None


# --- recommendations and report ---------------------------------------------------------


def categories(monitor: Monitor) -> dict[str, str]:
    return {r["category"]: r["priority"] for r in monitor.recommendations()}


def test_no_data_no_recommendations(monitor: Monitor) -> None:
    assert monitor.recommendations() == []
    assert monitor.bottlenecks() == []


def test_seed_recommendations(make_monitor: MakeMonitor, clock: FakeClock, reader: Reader) -> None:
    monitor = make_monitor()
    monitor.register_gauge("cache_hit_rate", lambda: 0.7)
    assert categories(monitor) == {"Caching": "high"}
    reader.values["rss_mb"] = 1024
    monitor.sample_now()
    assert "Memory" not in categories(monitor)
    reader.values["rss_mb"] = 1500
    monitor.sample_now()
    memory = [r for r in monitor.recommendations() if r["category"] == "Memory"]
    assert memory[0]["priority"] == "medium" and memory[0]["values"]["peak_rss_mb"] == 1500
    clock.advance(600)
    monitor.record("source.fetch", 31.0)
    assert categories(monitor)["Performance"] == "high"
    for _ in range(5):
        monitor.record("source.fetch", 12.0)
    assert categories(monitor)["Batch processing"] == "medium"


def test_own_recommendations(monitor: Monitor, reader: Reader) -> None:
    record_ms(monitor, "source.fetch", [1] * 20, failures=2)
    assert categories(monitor) == {"Reliability": "medium"}
    queue = [3.0]
    monitor.register_gauge("batch_queue_depth", lambda: queue[0])
    reader.values["cpu_percent"] = 10
    monitor.sample_now()
    assert categories(monitor)["Concurrency"] == "low"
    reader.values["cpu_percent"] = 95
    monitor.sample_now()
    found = categories(monitor)
    assert found["CPU"] == "medium" and "Concurrency" not in found  # average CPU is 52.5 %


def test_report(monitor: Monitor, clock: FakeClock) -> None:
    record_ms(monitor, "source.fetch", [100, 300], failures=1)
    record_ms(monitor, "parse", [10, 20])
    monitor.record("batch.run", 40.0)
    monitor.sample_now()
    report = monitor.report()
    assert report["generated_at"] == clock.now() and report["source"] == "memory"
    assert report["summary"] == {
        "total_operations": 5,
        "distinct_operations": 3,
        "failures": 1,
        "success_rate": 0.8,
        "mean_response_ms": pytest.approx((400 + 30 + 40_000) / 5),
    }
    top = [op["operation"] for op in report["top_operations"]]
    assert top == ["batch.run", "source.fetch", "parse"]
    assert {"slow-mean", "time-share"} <= {b["rule"] for b in report["bottlenecks"]}
    assert report["resources"]["count"] == 1 and "rss_mb" in report["resources"]["summary"]
    assert report["recommendations"][0]["category"] == "Performance"


# --- resources ----------------------------------------------------------------------------


def test_sampler_with_injected_reader_and_gauges(
    monitor: Monitor, reader: Reader, clock: FakeClock
) -> None:
    depth = [2.0]
    monitor.register_gauge("batch_queue_depth", lambda: depth[0])
    monitor.register_gauge("cache_hit_rate", lambda: None)  # no lookups yet
    monitor.register_gauge("storage_pending_writes", lambda: float("nan"))

    def broken() -> float:
        raise RuntimeError("gauge source gone")

    monitor.register_gauge("batch_running", broken)
    reader.values.update(rss_mb=100, cpu_percent=20)
    first = monitor.sample_now()
    assert first.values["rss_mb"] == 100 and first.values["batch_queue_depth"] == 2
    assert set(first.values) == {*RESOURCE_FIELDS, "batch_queue_depth"}
    clock.advance(60)
    reader.values.update(rss_mb=300, cpu_percent=60)
    depth[0] = 4
    monitor.sample_now()
    found = monitor.resources()
    assert found["count"] == 2 and found["samples"][1]["at"] == clock.now()
    assert found["summary"]["rss_mb"] == {"avg": 200.0, "peak": 300.0}
    assert found["summary"]["cpu_percent"] == {"avg": 40.0, "peak": 60.0}
    assert found["summary"]["batch_queue_depth"] == {"avg": 3.0, "peak": 4.0}
    assert monitor.resources(window_s=60)["count"] == 1
    with pytest.raises(ConfigError):
        monitor.register_gauge("rss_mb", lambda: 1.0)


def test_sampler_with_real_psutil(make_monitor: MakeMonitor, tmp_path: Path) -> None:
    monitor = make_monitor(resource_reader=None)
    with open(tmp_path / "held-open.txt", "w") as held:
        held.write("x")
        sum(i * i for i in range(2_000_000))  # some CPU time since the reader started
        values = monitor.sample_now().values
    assert 1 < values["rss_mb"] < 100_000
    assert 0 < values["cpu_percent"]
    assert values["threads"] >= 1 and values["open_files"] >= 1
    assert 0 < values["system_memory_percent"] <= 100
    assert values["disk_read_bytes"] >= 0 and values["disk_write_bytes"] >= 0


def test_background_sampler_starts_and_stops(
    make_monitor: MakeMonitor, reader: Reader, make_storage: Callable[[], Storage], clock: FakeClock
) -> None:
    settings = MonitorSettings(sample_interval_s=0.1)
    monitor = make_monitor(settings=settings, storage=make_storage())
    since = clock.now() - timedelta(seconds=1)
    monitor.start()
    assert reader.called.wait(10)
    monitor.close()
    calls = reader.calls
    assert len(monitor.resource_history(since)) == calls  # close() persisted every sample
    assert not any(t.name == "perf-monitor" for t in threading.enumerate())


# --- history --------------------------------------------------------------------------------


def test_aggregates_persist_and_read_back_across_monitors(
    make_monitor: MakeMonitor, make_storage: Callable[[], Storage], clock: FakeClock
) -> None:
    writer = make_monitor(storage=make_storage())
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
    assert [(r["calls"], r["failures"]) for r in rows] == [(100, 2), (1, 0)]
    first = rows[0]
    assert first["interval_start"] == start
    assert first["interval_end"] == start + timedelta(seconds=10)
    assert first["interval_start"].tzinfo == UTC
    assert (first["p50_ms"], first["p95_ms"], first["p99_ms"]) == (50.0, 95.0, 99.0)
    assert first["mean_ms"] == pytest.approx(50.5) and first["errors"] == {"SourceError": 2}
    assert len(writer.history(start + timedelta(seconds=10))) == 2  # the second interval
    samples = writer.resource_history(start - timedelta(seconds=1))
    assert len(samples) == 1 and samples[0]["cache_hit_rate"] == 0.9

    reader = make_monitor(storage=make_storage())  # another process: empty memory
    merged = only(reader, "source.fetch")
    assert (merged.calls, merged.failures, merged.max_ms) == (101, 2, 500.0)
    assert merged.p50_ms == pytest.approx(51, rel=0.01)  # from the merged sketches
    assert merged.p95_ms == pytest.approx(96, rel=0.01)
    assert merged.calls_per_second == pytest.approx(101 / 20)
    assert reader.report()["source"] == "history"
    assert reader.resources()["summary"]["cache_hit_rate"]["avg"] == 0.9
    assert only(writer, "source.fetch", source="memory").calls == 101
    with pytest.raises(ConfigError):
        reader.stats(labels={"mode": "naive"}, source="history")
    clock.advance(180)  # idle but alive: its samples show history that it was observed
    writer.sample_now()
    writer.flush()
    assert only(reader, "source.fetch").calls_per_second == pytest.approx(101 / 200)


def test_retention_prunes_old_history(
    make_monitor: MakeMonitor, make_storage: Callable[[], Storage], clock: FakeClock
) -> None:
    monitor = make_monitor(storage=make_storage(), settings=MonitorSettings(retention_days=2))
    start = clock.now()
    monitor.record("job.check", 0.1)
    monitor.sample_now()
    monitor.flush()
    clock.advance(3 * 86_400)
    monitor.record("job.check", 0.2)
    monitor.flush()
    rows = monitor.history(start - timedelta(days=1))
    assert [r["max_ms"] for r in rows] == [200.0]
    assert monitor.resource_history(start - timedelta(days=1)) == []


# --- threads --------------------------------------------------------------------------------


def test_concurrent_recording_from_8_threads(
    make_monitor: MakeMonitor, make_storage: Callable[[], Storage], clock: FakeClock
) -> None:
    monitor = make_monitor(storage=make_storage())
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
    assert sum(r["calls"] for r in persisted) == 8 * per_thread  # none lost, none twice


# --- command line ---------------------------------------------------------------------------


def test_perf_commands_read_history_of_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'perf.db'}"
    storage = open_storage(StorageSettings(db_url=url))
    writer = Monitor(MonitorSettings(), storage=storage, resource_reader=Reader(rss_mb=64))
    record_ms(writer, "source.fetch", [20] * 11, failures=2)
    writer.sample_now()
    writer.close()
    storage.close()

    assert main(["--db", url, "perf", "stats", "--window", "1h", "--json"]) == 0
    (fetch,) = json.loads(capsys.readouterr().out)
    assert (fetch["operation"], fetch["calls"], fetch["failures"]) == ("source.fetch", 11, 2)
    assert main(["--db", url, "perf", "report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "history" and report["summary"]["total_operations"] == 11
    assert report["recommendations"][0]["category"] == "Reliability"
    assert main(["--db", url, "perf", "resources"]) == 0
    assert "rss_mb" in capsys.readouterr().out
    assert main(["--db", url, "perf", "bottlenecks", "--window", "5x"]) == 2
