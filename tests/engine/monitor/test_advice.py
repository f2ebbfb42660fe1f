from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest

from engine.clock import FakeClock
from engine.instrument import current_origin, origin_of, reads_for
from engine.monitor.advice import (
    INFORMATIONAL,
    Findings,
    Recommendation,
    Thresholds,
    find_bottlenecks,
    recommend,
)
from engine.monitor.core import Monitor
from engine.monitor.stats import Figure, OperationStats
from tests.engine.monitor.support import MakeMonitor, Reader, categories, fired, record_ms

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
    assert rare is not None and rare.severity == "low" and rare.rule in INFORMATIONAL
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
    default = make_monitor()
    strict = make_monitor(
        thresholds=Thresholds(slow_mean_s=0.5, very_slow_mean_s=1.0, cache_hit_rate=0.95)
    )
    for monitor in (default, strict):
        monitor.record("parse", 0.6)
        monitor.register_gauge("cache_hit_rate", lambda: 0.9)
    assert fired(default, "parse", "slow-mean") is None
    assert fired(default, "cache", "cache-hit-rate") is None
    assert categories(default) == {}
    slow = fired(strict, "parse", "slow-mean")
    assert slow is not None and slow.severity == "medium" and "limit 0.5 s" in slow.message
    assert slow.values == {"mean_s": pytest.approx(0.6), "threshold_s": 0.5, "calls": 1}
    cache = fired(strict, "cache", "cache-hit-rate")
    assert cache is not None and cache.values == {"hit_rate": 0.9, "threshold": 0.95}
    assert categories(strict) == {"Caching": "medium"}  # as the bottleneck: one severity
    strict.record("parse", 1.6)  # mean 1.1 s: above very_slow_mean_s
    slower = fired(strict, "parse", "slow-mean")
    assert slower is not None and slower.severity == "high"
    assert slower.values["threshold_s"] == 1.0
    assert categories(strict) == {"Caching": "medium", "Performance": "high"}


# --- recommendations and report ---------------------------------------------------------


def test_no_data_no_recommendations(monitor: Monitor) -> None:
    assert monitor.recommendations() == []
    assert monitor.bottlenecks() == []


def test_seed_recommendations(make_monitor: MakeMonitor, clock: FakeClock, reader: Reader) -> None:
    monitor = make_monitor()
    monitor.register_gauge("cache_hit_rate", lambda: 0.7)
    assert categories(monitor) == {"Caching": "medium"}  # the bottleneck's severity
    reader.values["rss_mb"] = 1024
    monitor.sample_now()
    assert "Memory" not in categories(monitor)
    reader.values["rss_mb"] = 1500
    monitor.sample_now()
    memory = [r for r in monitor.recommendations() if r.category == "Memory"]
    assert memory[0].priority == "medium" and memory[0].values["peak_rss_mb"] == 1500
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


# --- the rules alone -------------------------------------------------------------------------

FETCH = OperationStats(
    operation="source.fetch",
    calls=10,
    successes=10,
    failures=0,
    success_rate=1.0,
    calls_per_second=1.0,
    mean_ms=31_000.0,
    min_ms=30_000.0,
    max_ms=32_000.0,
    p50_ms=31_000.0,
    p95_ms=32_000.0,
    p99_ms=32_000.0,
    total_ms=310_000.0,
    share_of_time=1.0,
    errors={},
)


def test_rules_are_functions_of_the_figures() -> None:
    t = Thresholds()
    found = find_bottlenecks([FETCH], [], None, t)
    assert [(b.operation, b.rule, b.severity) for b in found] == [
        ("source.fetch", "slow-mean", "high")
    ]
    faster = replace(FETCH, mean_ms=9_000.0, p95_ms=9_000.0, p99_ms=9_000.0)
    assert find_bottlenecks([faster], [], 0.8, t) == []
    previous = replace(faster, p95_ms=5_000.0)
    regressed = find_bottlenecks([replace(faster, p95_ms=7_600.0)], [previous], 0.8, t)
    assert [b.rule for b in regressed] == ["p95-regression"]


def test_recommendations_are_typed_and_most_urgent_first() -> None:
    bottlenecks = find_bottlenecks([FETCH], [], 0.5, Thresholds())
    resources = {"rss_mb": Figure(avg=900.0, peak=2000.0)}
    advice = recommend(Findings([FETCH], bottlenecks, resources, 0.5), Thresholds())
    assert [(r.category, r.priority) for r in advice] == [
        ("Performance", "high"),
        ("Caching", "medium"),
        ("Memory", "medium"),
    ]
    assert advice[2] == Recommendation(
        "Memory",
        "medium",
        "Resident memory peaked at 2000 MB, above 1024 MB: lower cacheMaxSize / maxSize or "
        "maxConcurrentJobs, and keep enableResourceThrottling on.",
        {"peak_rss_mb": 2000.0, "threshold_mb": 1024.0},
    )
    with pytest.raises(FrozenInstanceError):
        advice[0].priority = "low"  # type: ignore[misc]
    assert recommend(Findings([], [], {}, None), Thresholds()) == []


# --- issue #19: no false alarms -----------------------------------------------------------------


def test_cache_rule_needs_a_minimum_of_reads_when_their_number_is_known() -> None:
    t = Thresholds()
    assert find_bottlenecks([], [], 0.4, t, cache_reads=6) == []
    found = find_bottlenecks([], [], 0.4, t, cache_reads=t.min_cache_reads)
    assert [(b.rule, b.severity, b.values["reads"]) for b in found] == [
        ("cache-hit-rate", "high", t.min_cache_reads)
    ]


def test_a_finding_has_one_severity_on_both_sides() -> None:
    t = Thresholds()
    for rate, severity in ((0.7, "medium"), (0.3, "high")):
        found = find_bottlenecks([], [], rate, t, cache_reads=500)
        advice = recommend(Findings([], found, {}, rate), t)
        assert [b.severity for b in found] == [severity]
        assert {a.priority for a in advice if a.category == "Caching"} == {severity}


def test_reads_of_a_user_interface_are_kept_out_of_the_engine_rules(monitor: Monitor) -> None:
    with reads_for("dashboard"):
        monitor.record("storage.jobs", 40.0)  # slow, but the dashboard's own read
    monitor.record("parse", 0.001)
    ops = {s.operation: s for s in monitor.stats()}
    assert set(ops) == {"dashboard:storage.jobs", "parse"}
    assert origin_of("dashboard:storage.jobs") == "dashboard" and origin_of("parse") is None
    assert monitor.stats(labels={"origin": "dashboard"})[0].operation == "dashboard:storage.jobs"
    assert not [b for b in monitor.bottlenecks() if b.operation.startswith("dashboard")]
    assert current_origin() is None, "the label ends with the block"
