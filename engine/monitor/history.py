"""History: the monitor's figures persisted through a :class:`PerfStore` and read back.

Every ``aggregate_interval_s`` (and on flush) the calls recorded since the last
write become one :class:`PerfInterval` per operation, and the unsaved resource
samples go along; both are pruned after ``retention_days``. Another process
(CLI, API, dashboard) reads them back as statistics with ``source="history"``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta

from engine.clock import Clock
from engine.monitor.recorder import Record, Recorder
from engine.monitor.sampler import Sampler
from engine.monitor.stats import OperationStats, build_stats, interval, merge_intervals
from engine.settings import MonitorSettings
from engine.store.perf import LatencyPoint, PerfInterval, PerfStore, ResourceSample

__all__ = ["PRUNE_EVERY_S", "History"]

PRUNE_EVERY_S = 3600.0


class History:
    """Writes the monitor's intervals and samples to a store and reads them back; thread-safe.

    Args:
        store: where history goes.
        settings: aggregation interval and retention.
        clock: stamps intervals and windows.
        recorder: whose calls are aggregated.
        sampler: whose samples are saved.
        process: names this process in its rows (host:pid).
    """

    def __init__(
        self,
        store: PerfStore,
        *,
        settings: MonitorSettings,
        clock: Clock,
        recorder: Recorder,
        sampler: Sampler,
        process: str,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._recorder = recorder
        self._sampler = sampler
        self._process = process
        self._lock = threading.Lock()
        self._interval_mono = clock.monotonic()
        self._interval_start = clock.now()
        self._last_prune: float | None = None

    # --- writing --------------------------------------------------------------------------

    def persist_if_due(self) -> None:
        """Persist once an aggregation interval has passed since the last write."""
        if self._clock.monotonic() - self._interval_mono >= self._settings.aggregate_interval_s:
            self.persist()

    def persist(self) -> None:
        """Write the current (partial) interval and the unsaved samples; prune hourly."""
        calls, start, end = self._drain()
        self._store.add_intervals(
            [
                interval(op, records, start=start, end=end, process=self._process)
                for op, records in calls.items()
            ]
        )
        self._store.add_samples(self._sampler.take_unsaved())
        if self._last_prune is None or self._clock.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self.prune()

    def flush(self) -> None:
        """Persist, then commit the store's deferred writes."""
        self.persist()
        self._store.flush()

    def prune(self) -> None:
        """Delete history older than the retention."""
        self._last_prune = self._clock.monotonic()
        self._store.prune(self._clock.now() - timedelta(days=self._settings.retention_days))

    def _drain(self) -> tuple[dict[str, list[Record]], datetime, datetime]:
        """Take the calls added since the last drain; close the interval."""
        now, now_mono = self._clock.now(), self._clock.monotonic()
        calls = self._recorder.drain()
        with self._lock:
            start, self._interval_start, self._interval_mono = self._interval_start, now, now_mono
        return calls, start, now

    # --- reading --------------------------------------------------------------------------

    def stats(self, window_s: float, back: int) -> list[OperationStats]:
        """Figures per operation over the window ``back`` windows ago, all processes merged."""
        end = self._clock.now() - timedelta(seconds=back * window_s)
        start = end - timedelta(seconds=window_s)
        rows = self._store.intervals(after=start, until=end)
        by_op: dict[str, list[PerfInterval]] = defaultdict(list)
        for row in rows:
            by_op[row.operation].append(row)
        covered = self._observed_s(start, end, rows)
        return build_stats({op: merge_intervals(group) for op, group in by_op.items()}, covered)

    def _observed_s(self, start: datetime, end: datetime, rows: list[PerfInterval]) -> float:
        """Seconds of the window that history covers: from its start, or from when history
        began if later (the first persisted interval or resource sample of any process),
        to its end. A short run is counted over the window, not over its own interval."""
        first = self._store.history_start()
        if not rows and first is None:
            return 0.0
        begun = min([row.interval_start for row in rows] + ([first] if first else []))
        return max(0.0, (end - max(start, begun)).total_seconds())

    def samples(self, since: datetime) -> list[ResourceSample]:
        """Samples of every process taken after ``since``, oldest first."""
        return self._store.samples(after=since)

    def intervals(self, since: datetime, operation: str | None = None) -> list[PerfInterval]:
        """Intervals ending after ``since``, oldest first."""
        return self._store.intervals(after=since, operation=operation)

    def latency(
        self, window_s: float, operations: list[str], max_points: int
    ) -> list[LatencyPoint]:
        """p50/p95 over time of ``operations`` over the window (see :meth:`PerfStore.latency`)."""
        after = self._clock.now() - timedelta(seconds=window_s)
        return self._store.latency(after=after, operations=operations, max_points=max_points)
