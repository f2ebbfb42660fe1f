from __future__ import annotations

from datetime import timedelta

import pytest

from engine.clock import FakeClock
from engine.errors import ConfigError
from engine.monitor.core import Monitor, parse_window
from engine.monitor.recorder import Record
from engine.monitor.stats import (
    PERCENTILES,
    ReportSummary,
    build_stats,
    interval,
    merge_intervals,
    nearest_rank,
    sketch,
    sketch_quantile,
    summary,
)
from tests.engine.monitor.support import MakeMonitor, only, record_ms

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


# --- the pure pieces ------------------------------------------------------------------------


def calls(*durations_ns: int, error: str | None = None) -> list[Record]:
    return [(0.0, ns, error, None) for ns in durations_ns]


def test_nearest_rank_is_an_observed_value() -> None:
    ordered = list(range(1, 101))
    assert [nearest_rank(ordered, p) for p in (1, 50, 95, 99, 100)] == [1, 50, 95, 99, 100]
    assert [nearest_rank([10, 20, 30], p) for p in PERCENTILES] == [20, 30, 30]
    assert nearest_rank([7], 50) == 7


def test_sketch_quantiles_are_within_one_percent() -> None:
    records = calls(*range(1_000_000, 101_000_000, 1_000_000))
    counts = sketch(records)
    assert sum(counts.values()) == 100
    ordered = sorted(r[1] for r in records)
    for p in PERCENTILES:
        assert sketch_quantile(counts, p) == pytest.approx(nearest_rank(ordered, p), rel=0.01)
    with pytest.raises(ValueError):
        sketch_quantile({}, 50)


def test_intervals_merge_into_one_aggregate(clock: FakeClock) -> None:
    start, end = clock.now(), clock.now() + timedelta(seconds=10)
    first = interval(
        "parse",
        calls(1_000_000) + calls(3_000_000, error="KeyError"),
        start=start,
        end=end,
        process="host:1",
    )
    assert (first.calls, first.failures, first.total_ms, first.min_ms, first.max_ms) == (
        2,
        1,
        4.0,
        1.0,
        3.0,
    )
    assert (first.p50_ms, first.p99_ms, first.errors) == (1.0, 3.0, {"KeyError": 1})
    assert sum(first.sketch.values()) == 2
    second = interval("parse", calls(2_000_000), start=end, end=end, process="host:2")
    merged = merge_intervals([first, second])
    assert (merged.calls, merged.failures, merged.errors) == (3, 1, {"KeyError": 1})
    assert (merged.total_ns, merged.min_ns, merged.max_ns) == (6e6, 1e6, 3e6)
    p50, p95, p99 = merged.quantiles_ns
    assert p50 == pytest.approx(2e6, rel=0.01)
    assert p95 == pytest.approx(3e6, rel=0.01) and p99 <= merged.max_ns  # clipped to the range


def test_observed_time_counts_as_at_least_one_second(clock: FakeClock) -> None:
    agg = merge_intervals(
        [interval("parse", calls(1_000_000), start=clock.now(), end=clock.now(), process="p")]
    )
    (found,) = build_stats({"parse": agg}, covered_s=0.2)
    assert found.calls_per_second == 1.0 and found.share_of_time == 1.0
    assert summary([]) == ReportSummary(
        total_operations=0,
        distinct_operations=0,
        failures=0,
        success_rate=None,
        mean_response_ms=None,
    )
