"""Performance alerts: once per occurrence, and only over windows with enough reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.notify.perf import PerfWatch
from engine.notify.rules import OperationP95, PerfFigures
from engine.settings import NotifySettings
from engine.store.events import EventKind

NOW = datetime(2025, 7, 1, tzinfo=UTC)


def figures(
    hits: int = 0, misses: int = 0, ops: tuple[OperationP95, ...] = (), rss: float | None = None
) -> PerfFigures:
    return PerfFigures(
        cache_hits=hits,
        cache_misses=misses,
        operations=ops,
        rss_mb=rss,
        memory_threshold_mb=1024,
    )


def test_six_reads_all_misses_raise_no_alert() -> None:
    watch = PerfWatch(NotifySettings())
    assert watch.evaluate(figures(hits=0, misses=6), NOW) == []


def test_a_low_hit_rate_alerts_once_per_occurrence() -> None:
    watch = PerfWatch(NotifySettings())
    found = watch.evaluate(figures(hits=50, misses=150), NOW)  # 200 reads at 25 %
    assert [e.kind for e in found] == [EventKind.CACHE_HIT_RATE]
    assert found[0].payload["reads"] == 200 and found[0].payload["hit_rate"] == 0.25
    # Still low over the next window: the same occurrence, nothing new.
    assert watch.evaluate(figures(hits=100, misses=300), NOW + timedelta(minutes=1)) == []
    # A window back above the threshold ends it; falling again is a new occurrence.
    assert watch.evaluate(figures(hits=300, misses=300), NOW + timedelta(minutes=2)) == []
    again = watch.evaluate(figures(hits=300, misses=600), NOW + timedelta(minutes=3))
    assert [e.kind for e in again] == [EventKind.CACHE_HIT_RATE]
    assert again[0].key != found[0].key


def test_a_window_grows_until_it_has_enough_reads() -> None:
    watch = PerfWatch(NotifySettings(cache_min_reads=200))
    assert watch.evaluate(figures(hits=0, misses=150), NOW) == []  # 150 reads: too few
    found = watch.evaluate(figures(hits=0, misses=250), NOW)  # the same window, now 250
    assert found and found[0].payload["reads"] == 250


def test_a_slow_p95_and_high_memory_alert_once_each() -> None:
    watch = PerfWatch(NotifySettings(p95_thresholds="source.fetch=100"))
    slow = (OperationP95("source.fetch", 150.0, 40), OperationP95("parse", 150.0, 40))
    found = watch.evaluate(figures(ops=slow, rss=900.0), NOW)
    assert {(e.kind, e.payload.get("operation")) for e in found} == {
        (EventKind.SLOW_OPERATION, "source.fetch"),
        (EventKind.MEMORY_HIGH, None),
    }
    assert watch.evaluate(figures(ops=slow, rss=950.0), NOW) == []
    calm = (OperationP95("source.fetch", 50.0, 40),)
    assert watch.evaluate(figures(ops=calm, rss=100.0), NOW) == []
    assert len(watch.evaluate(figures(ops=slow, rss=100.0), NOW + timedelta(seconds=1))) == 1
