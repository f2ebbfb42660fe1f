"""Performance monitor: times engine operations, samples resources, finds bottlenecks.

Usage::

    monitor = Monitor(settings.monitor, clock=clock, store=SqlPerfStore(storage))
    with monitor.timed("source.fetch", district="12"):
        ...

    @monitor.timed("parse")
    def parse(text: str) -> Snapshot: ...

    monitor.record("job.check", 0.25, ok=False, error="SourceError", district="12")

Operation names are dotted, layer first: ``source.fetch``, ``parse``,
``storage.<operation>`` (reads, writes, flushes), ``cache.get``, ``job.check``,
``job.finalize``, ``batch.item``, ``batch.run``; labels: ``district``,
``layer``, ``mode``. Gauges: see :mod:`engine.monitor.sampler`.

The monitor is a facade over four parts, each with its own reason to change:
the :class:`~engine.monitor.recorder.Recorder` (the hot path), the
:class:`~engine.monitor.sampler.Sampler` (resources, gauges, background
thread), :class:`~engine.monitor.history.History` (through a
:class:`~engine.store.perf.PerfStore`) and :mod:`engine.monitor.advice`
(bottleneck rules and recommendations). How figures are defined:
:mod:`engine.monitor.stats`.

- Durations are measured with ``time.perf_counter_ns``; the injected clock
  only places calls in time windows and stamps history.
- A window is the last ``window_s`` seconds: a call exactly ``window_s`` old
  has left it. The previous window is the ``window_s`` seconds before that.
- ``calls_per_second`` counts the observed part of the window: in memory,
  since the monitor started; from history, since history began (the first
  persisted interval or resource sample of any process), up to the window's
  end. One call 30 s after start is 1/30 call per second, not infinity nor
  1/300; a 2 s run 10 minutes into a 15-minute window counts over 15 minutes,
  not over its own 2 s.

Memory is bounded: each operation keeps its last :data:`MAX_CALLS` calls and
the sampler its last :data:`MAX_SAMPLES` samples. With a store, per-interval
aggregates and resource samples are written through deferred writes every
``aggregate_interval_s`` and pruned after ``retention_days``, so another
process (CLI, API, dashboard) sees them with ``source="history"``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from engine.clock import Clock, SystemClock
from engine.errors import ConfigError
from engine.monitor.advice import (
    Bottleneck,
    Findings,
    Recommendation,
    Thresholds,
    find_bottlenecks,
    recommend,
)
from engine.monitor.history import History
from engine.monitor.recorder import MAX_CALLS, Labels, Recorder, Timer
from engine.monitor.report import Report, Resources, ResourceSummary
from engine.monitor.resources import ProcessReader
from engine.monitor.sampler import MAX_SAMPLES, Gauge, ResourceReader, Sampler
from engine.monitor.stats import (
    Figure,
    OperationStats,
    ReportSummary,
    aggregate,
    build_stats,
    has_labels,
    parse_window,
    resource_summary,
    summary,
)
from engine.settings import MonitorSettings
from engine.store.perf import LatencyPoint, PerfInterval, PerfStore, ResourceSample

__all__ = [
    "MAX_CALLS",
    "MAX_SAMPLES",
    "Bottleneck",
    "Figure",
    "Monitor",
    "OperationStats",
    "Recommendation",
    "Report",
    "ReportSummary",
    "ResourceSample",
    "ResourceSummary",
    "Resources",
    "Source",
    "Thresholds",
    "Timer",
    "parse_window",
]

TOP_OPERATIONS = 10

Source = Literal["auto", "memory", "history"]
"""Where figures come from: this process's memory, persisted history, or memory
unless it has nothing for the window and a store is attached."""


@dataclass(frozen=True)
class _Analysis:
    window_s: float
    source: str
    resources: Resources
    findings: Findings


class Monitor:
    """Times operations, samples resources, and turns both into statistics and advice.

    Thread-safe: any thread may record while another reads statistics.

    Args:
        settings: window length, sample and aggregation intervals, retention.
        clock: places calls in windows and stamps history (durations use
            ``perf_counter_ns``); defaults to the system clock.
        store: where history goes; without one the monitor is memory-only.
        recorder: the calls timed by the engine's parts (a new one by default).
        resource_reader: returns the figures of
            :data:`engine.monitor.resources.RESOURCE_FIELDS`; defaults to
            :class:`engine.monitor.resources.ProcessReader` (psutil).
        thresholds: when bottleneck rules and recommendations fire.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        *,
        clock: Clock | None = None,
        store: PerfStore | None = None,
        recorder: Recorder | None = None,
        resource_reader: ResourceReader | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.settings = settings
        self.thresholds = thresholds or Thresholds()
        self._clock: Clock = clock or SystemClock()
        self.recorder = recorder or Recorder(clock=self._clock)
        process = f"{socket.gethostname()[:40]}:{os.getpid()}"
        self._sampler = Sampler(
            clock=self._clock,
            reader=resource_reader or ProcessReader(),
            process=process,
            keep_unsaved=store is not None,
        )
        self._history = None
        if store is not None:
            self._history = History(
                store,
                settings=settings,
                clock=self._clock,
                recorder=self.recorder,
                sampler=self._sampler,
                process=process,
            )

    # --- recording (the hot path) ------------------------------------------------

    def timed(self, operation: str, **labels: object) -> Timer:
        """A timer for one call (see :meth:`Recorder.timed`)."""
        # Built here rather than through recorder.timed: one call and one labels dict fewer.
        return Timer(self.recorder, operation, labels or None)

    def record(
        self,
        operation: str,
        duration_s: float,
        *,
        ok: bool = True,
        error: str | None = None,
        **labels: object,
    ) -> None:
        """Record a call timed by the caller (see :meth:`Recorder.record`)."""
        self.recorder.record(operation, duration_s, ok=ok, error=error, **labels)

    # --- statistics ---------------------------------------------------------------

    def stats(
        self,
        window_s: float | None = None,
        operation: str | None = None,
        *,
        labels: Labels | None = None,
        source: Source = "auto",
    ) -> list[OperationStats]:
        """Figures per operation over the window (default ``window_ms``), slowest total first.

        ``labels`` keeps only calls carrying all the given labels (memory only:
        history is aggregated per operation).
        """
        found, _ = self._window_stats(self._window(window_s), 0, source, labels)
        return [s for s in found if operation is None or s.operation == operation]

    def _window(self, window_s: float | None) -> float:
        window = self.settings.window_ms / 1000 if window_s is None else float(window_s)
        if not window > 0:
            raise ConfigError("window", window_s, "expected a positive number of seconds")
        return window

    def _window_stats(
        self, window: float, back: int, source: str, labels: Labels | None
    ) -> tuple[list[OperationStats], str]:
        if source not in ("auto", "memory", "history"):
            raise ConfigError("source", source, "expected 'auto', 'memory' or 'history'")
        if source != "history":
            found = self._memory_stats(window, back, labels)
            if found or source == "memory" or labels or self._history is None:
                return found, "memory"
        if labels:
            raise ConfigError("labels", dict(labels), "history is aggregated per operation only")
        return self._need_history().stats(window, back), "history"

    def _memory_stats(
        self, window: float, back: int, labels: Labels | None
    ) -> list[OperationStats]:
        end = self._clock.monotonic() - back * window
        start = end - window
        aggs = {}
        for op, records in self.recorder.calls():
            inside = [r for r in records if start < r[0] <= end and has_labels(r[3], labels)]
            if inside:
                aggs[op] = aggregate(inside)
        return build_stats(aggs, end - max(start, self.recorder.started))

    # --- bottlenecks, recommendations, report -------------------------------------

    def bottlenecks(
        self, window_s: float | None = None, *, source: Source = "auto"
    ) -> list[Bottleneck]:
        """Rules that fire over the window, most severe first."""
        return self._analyse(window_s, source).findings.bottlenecks

    def recommendations(
        self, window_s: float | None = None, *, source: Source = "auto"
    ) -> list[Recommendation]:
        """Advice over the window, most urgent first."""
        return recommend(self._analyse(window_s, source).findings, self.thresholds)

    def report(
        self,
        window_s: float | None = None,
        *,
        source: Source = "auto",
        cache: tuple[float | None, int] | None = None,
    ) -> Report:
        """Summary, top operations, bottlenecks, resource summary and recommendations.

        ``cache``: the cache's hit rate and the reads behind it, as the caller shows them
        (default: the ``cache_hit_rate`` and ``cache_reads`` gauges).
        """
        found = self._analyse(window_s, source, cache)
        stats = found.findings.stats
        return Report(
            window_s=found.window_s,
            generated_at=self._clock.now(),
            source=found.source,
            summary=summary(stats),
            top_operations=stats[:TOP_OPERATIONS],
            bottlenecks=found.findings.bottlenecks,
            resources=found.resources.summed_up,
            recommendations=recommend(found.findings, self.thresholds),
        )

    def _analyse(
        self, window_s: float | None, source: Source, cache: tuple[float | None, int] | None = None
    ) -> _Analysis:
        window = self._window(window_s)
        current, used = self._window_stats(window, 0, source, None)
        previous, _ = self._window_stats(window, 1, used, None)
        resources = self.resources(window, source=source)
        hit_rate, reads = cache or (self._hit_rate(resources.summary, used), self._reads(used))
        found = find_bottlenecks(current, previous, hit_rate, self.thresholds, cache_reads=reads)
        findings = Findings(current, found, resources.summary, hit_rate)
        return _Analysis(window, used, resources, findings)

    def _hit_rate(self, summary: dict[str, Figure], source: str) -> float | None:
        """The window's average of the cache_hit_rate gauge; without samples, its value now
        (only for figures from memory: this process's cache says nothing about history)."""
        if "cache_hit_rate" in summary:
            return summary["cache_hit_rate"].avg
        if source == "history":
            return None
        return self._sampler.gauges(("cache_hit_rate",)).get("cache_hit_rate")

    def _reads(self, source: str) -> int | None:
        """The cache reads so far (the ``cache_reads`` gauge), if known."""
        reads = (
            None
            if source == "history"
            else self._sampler.gauges(("cache_reads",)).get("cache_reads")
        )
        return None if reads is None else int(reads)

    # --- resources and gauges -------------------------------------------------------

    def register_gauge(self, name: str, fn: Gauge) -> None:
        """Sample ``fn()`` with the resources under ``name`` (None or NaN: 'no value yet')."""
        self._sampler.register_gauge(name, fn)

    def sample_now(self) -> ResourceSample:
        """Read resources and gauges once, keep the sample and return it."""
        return self._sampler.sample_now()

    def resources(self, window_s: float | None = None, *, source: Source = "auto") -> Resources:
        """Samples over the window and, per figure and gauge, its average and peak."""
        window = self._window(window_s)
        samples, used = self._window_samples(window, source)
        return Resources(
            window_s=window,
            source=used,
            count=len(samples),
            samples=samples,
            summary=resource_summary(samples),
        )

    def _window_samples(self, window: float, source: str) -> tuple[list[ResourceSample], str]:
        if source != "history":
            found = self._sampler.window(window)
            if found or source == "memory" or self._history is None:
                return found, "memory"
        since = self._clock.now() - timedelta(seconds=window)
        return self._need_history().samples(since), "history"

    # --- background sampler -----------------------------------------------------------

    def start(self) -> None:
        """Start the sampler thread: a sample every ``sample_interval_s``, history every
        ``aggregate_interval_s``. Prunes history past retention first."""
        if self._sampler.running:
            return
        history = self._history
        if history is not None:
            history.prune()
        after_sample = history.persist_if_due if history is not None else _nothing
        self._sampler.start(self.settings.sample_interval_s, after_sample)

    def close(self) -> None:
        """Stop the sampler and write what is not persisted yet. Idempotent."""
        if self._sampler.stop():
            self.sample_now()  # a short-lived process still leaves its figures behind
        self.flush()

    # --- history ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the current partial interval and unsaved samples, and flush the store."""
        if self._history is not None:
            self._history.flush()

    def history(self, since: datetime, operation: str | None = None) -> list[PerfInterval]:
        """Persisted per-interval aggregates that end after ``since``, oldest first.

        Rows of every process that shares the database, each with its ``process``.
        """
        return self._need_history().intervals(since, operation)

    def resource_history(self, since: datetime) -> list[ResourceSample]:
        """Persisted resource samples taken after ``since``, oldest first (all processes)."""
        return self._need_history().samples(since)

    def latency_series(
        self,
        window_s: float,
        *,
        top: int = 8,
        max_points: int = 400,
        operations: Sequence[str] | None = None,
    ) -> list[LatencyPoint]:
        """p50/p95 over time of ``operations`` (default: the ``top`` by total time), from
        history. A long window is averaged into at most ``max_points`` points per operation.
        """
        if operations is None:
            operations = [s.operation for s in self.stats(window_s)[:top]]
        return self._need_history().latency(window_s, list(operations), max_points)

    def _need_history(self) -> History:
        if self._history is None:
            raise ConfigError("source", "history", "this monitor has no storage")
        return self._history


def _nothing() -> None:
    return None
