"""Performance alerts: the seed's recommendations turned into events, once per occurrence.

:class:`PerfWatch` is evaluated periodically (the notifier's background thread,
never the hot path) with the figures of the moment. A condition that starts
holding gives one event; while it holds nothing more is emitted; once it has
stopped holding, holding again is a new occurrence and a new event.

- ``cache-hit-rate``: the hit rate over a window of at least ``cacheMinReads``
  reads is below ``cacheHitRateThreshold``. A window runs from the end of the
  previous one until it has enough reads; fewer reads decide nothing.
- ``slow-operation``: an operation's p95 over the monitor's window (with at least
  ``p95MinCalls`` calls) is above its threshold (``p95Thresholds``, else
  ``p95ThresholdMs``); one condition per operation.
- ``memory-high``: resident memory is above ``memoryAlertPct`` % of the batch
  runner's ``memoryThresholdMB``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.notify.rules import (
    PerfFigures,
    hit_rate_low,
    memory_high,
    p95_thresholds,
    slow_operations,
)
from engine.settings import NotifySettings
from engine.store.events import EventKind, NewEvent

__all__ = ["PerfWatch"]


class PerfWatch:
    """Turns performance figures into events, once per occurrence of each condition.

    Not thread-safe: one evaluating thread (the notifier's) owns it.
    """

    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings
        self._per_operation = p95_thresholds(settings.p95_thresholds)
        self._window_start = (0, 0)  # the cache counters where the current window began
        self._holding: set[str] = set()

    def evaluate(self, figures: PerfFigures, now: datetime) -> list[NewEvent]:
        """The events of conditions that started holding since the last evaluation."""
        found: list[NewEvent] = []
        for condition, holds, kind, payload in self._conditions(figures):
            event = self._edge(condition, holds, kind, payload, now)
            if event is not None:
                found.append(event)
        return found

    def _conditions(
        self, figures: PerfFigures
    ) -> list[tuple[str, bool | None, EventKind, dict[str, Any]]]:
        s = self._settings
        out = [self._cache_condition(figures)]
        slow = slow_operations(
            figures.operations,
            default_ms=s.p95_threshold_ms,
            per_operation=self._per_operation,
            min_calls=s.p95_min_calls,
        )
        for op in figures.operations:
            if op.operation in slow:
                limit = self._per_operation.get(op.operation, s.p95_threshold_ms)
                payload = {"operation": op.operation, "p95_ms": op.p95_ms, "calls": op.calls}
                payload["threshold_ms"] = limit
                out.append(
                    (f"slow:{op.operation}", slow[op.operation], EventKind.SLOW_OPERATION, payload)
                )
        high = memory_high(figures.rss_mb, figures.memory_threshold_mb, s.memory_alert_pct)
        memory = {
            "rss_mb": figures.rss_mb,
            "memory_threshold_mb": figures.memory_threshold_mb,
            "alert_pct": s.memory_alert_pct,
        }
        out.append(("memory", high, EventKind.MEMORY_HIGH, memory))
        return out

    def _cache_condition(
        self, figures: PerfFigures
    ) -> tuple[str, bool | None, EventKind, dict[str, Any]]:
        hits, misses = figures.cache_hits, figures.cache_misses
        start_hits, start_misses = self._window_start
        if hits < start_hits or misses < start_misses:  # the counters were reset
            start_hits = start_misses = 0
        window = (hits - start_hits, misses - start_misses)
        s = self._settings
        low = hit_rate_low(
            *window, threshold=s.cache_hit_rate_threshold, min_reads=s.cache_min_reads
        )
        # A window closes once it had enough reads; until then it keeps growing.
        self._window_start = (hits, misses) if low is not None else (start_hits, start_misses)
        reads = sum(window)
        payload = {
            "hit_rate": window[0] / reads if reads else None,
            "reads": reads,
            "threshold": s.cache_hit_rate_threshold,
            "min_reads": s.cache_min_reads,
        }
        return "cache", low, EventKind.CACHE_HIT_RATE, payload

    def _edge(
        self,
        condition: str,
        holds: bool | None,
        kind: EventKind,
        payload: dict[str, Any],
        now: datetime,
    ) -> NewEvent | None:
        if holds is None:  # not enough to judge: the condition stays as it was
            return None
        if not holds:
            self._holding.discard(condition)
            return None
        if condition in self._holding:
            return None
        self._holding.add(condition)
        return NewEvent(
            key=f"{kind.value}:{condition}:{now.isoformat()}", kind=kind, payload=payload
        )
