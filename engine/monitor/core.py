"""Performance monitor: times engine operations, samples resources, finds bottlenecks.

Usage::

    monitor = Monitor(settings.monitor, clock=clock, storage=storage)
    with monitor.timed("source.fetch", district="12"):
        ...

    @monitor.timed("parse")
    def parse(text: str) -> Snapshot: ...

    monitor.record("job.check", 0.25, ok=False, error="SourceError", district="12")

Operation names are dotted, layer first: ``source.fetch``, ``parse``,
``storage.<operation>`` (reads, writes, flushes), ``cache.get``, ``job.check``,
``job.finalize``, ``batch.item``, ``batch.run``; labels: ``district``,
``layer``, ``mode``. Gauges the monitor knows by name:
``cache_hit_rate`` (used by the caching rules), ``batch_queue_depth``,
``batch_running``, ``storage_pending_writes``.

How the figures are defined:

- Durations are measured with ``time.perf_counter_ns``; the injected clock
  only places calls in time windows and stamps history.
- A window is the last ``window_s`` seconds: a call exactly ``window_s`` old
  has left it. The previous window is the ``window_s`` seconds before that.
- Percentiles use the nearest-rank method: pXX is the smallest duration with
  at least XX % of the calls at or below it, always an observed value.
  Statistics rebuilt from persisted history merge log-bucket sketches
  instead and are within 1 % of the exact value.
- ``calls_per_second`` is calls divided by the part of the window that was
  observed, counted as at least one second: in memory, since the monitor
  started; from history, between the first and the last persisted interval or
  resource sample in the window. One call 30 s after start is 1/30 call per
  second, not infinity nor 1/300.
- ``share_of_time`` is the operation's total time over the total time of all
  operations; nested operations (a batch item around a fetch) count in both.

Memory is bounded: each operation keeps its last :data:`MAX_CALLS` calls and
the sampler its last :data:`MAX_SAMPLES` samples. With a storage, per-interval
aggregates and resource samples are written through deferred writes every
``aggregate_interval_s`` and pruned after ``retention_days``, so another
process (CLI, API, dashboard) sees them with ``source="history"``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Engine, Table, delete, func, select
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import Clock, SystemClock, as_utc
from engine.errors import ConfigError, StorageError
from engine.monitor.recorder import MAX_CALLS, Labels, Record, Recorder, Timer
from engine.monitor.resources import RESOURCE_FIELDS, ProcessReader
from engine.settings import MonitorSettings
from engine.store.schema import perf_aggregates, perf_resources

__all__ = [
    "MAX_CALLS",
    "MAX_SAMPLES",
    "Bottleneck",
    "Monitor",
    "MonitorStorage",
    "OperationStats",
    "ResourceSample",
    "Source",
    "Thresholds",
    "Timer",
    "parse_window",
]

log = logging.getLogger(__name__)

MAX_SAMPLES = 10_000
"""Resource samples kept in memory (about 14 hours at one sample every 5 s)."""
TOP_OPERATIONS = 10
PRUNE_EVERY_S = 3600.0
PERCENTILES = (50, 95, 99)
_GAMMA = 1.02  # sketch bucket growth: a bucket's middle is within 1 % of any value in it
_LOG_GAMMA = math.log(_GAMMA)
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}

Source = Literal["auto", "memory", "history"]
"""Where figures come from: this process's memory, persisted history, or memory
unless it has nothing for the window and a storage is attached."""
Severity = Literal["high", "medium", "low"]


class MonitorStorage(Protocol):
    """The part of :class:`engine.store.storage.Storage` the monitor uses."""

    @property
    def engine(self) -> Engine: ...

    def defer(self, table: Table, rows: list[dict[str, Any]]) -> None: ...

    def flush(self) -> object: ...

    def transaction(self, operation: str = ...) -> AbstractContextManager[Connection]: ...


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """When a bottleneck rule or a recommendation fires (strict comparisons)."""

    slow_mean_s: float = 10.0
    """Mean above this: medium 'slow-mean'."""
    very_slow_mean_s: float = 30.0
    """Mean above this: high 'slow-mean'."""
    min_calls_for_success_rate: int = 10
    """The success-rate rule needs more calls than this."""
    success_rate_medium: float = 0.95
    success_rate_high: float = 0.8
    tail_ratio: float = 3.0
    """p99 above this times the mean: medium 'tail-latency'."""
    min_calls_for_tail: int = 20
    """The tail rule needs this many calls (below 100 calls p99 is the maximum)."""
    rare_calls_per_s: float = 0.1
    min_calls_for_rare: int = 5
    """Fewer than ``rare_calls_per_s`` with more calls than this: low 'rare-calls'."""
    time_share: float = 0.5
    """Share of all measured time above this: medium 'time-share'."""
    p95_growth: float = 1.5
    """p95 above this times the previous window's: medium 'p95-regression'."""
    min_calls_for_growth: int = 5
    """Both windows need at least this many calls to compare p95."""
    cache_hit_rate: float = 0.8
    """Hit rate below this: medium 'cache-hit-rate' and a high 'Caching' recommendation."""
    cache_hit_rate_high: float = 0.5
    """Hit rate below this: the 'cache-hit-rate' bottleneck is high."""
    memory_peak_mb: float = 1024.0
    """Peak resident memory above this: 'Memory' recommendation."""
    cpu_peak_percent: float = 90.0
    """Peak CPU above this: 'CPU' recommendation."""
    cpu_idle_percent: float = 50.0
    """Average CPU below this while items queue: 'Concurrency' recommendation."""


@dataclass(frozen=True)
class OperationStats:
    """One operation's figures over a window (durations in milliseconds)."""

    operation: str
    calls: int
    successes: int
    failures: int
    success_rate: float
    calls_per_second: float
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    total_ms: float
    share_of_time: float
    errors: dict[str, int]
    """Failures by error type."""


@dataclass(frozen=True)
class Bottleneck:
    """A rule that fired, the numbers that made it fire and what to do about it."""

    operation: str
    rule: str
    severity: Severity
    message: str
    values: dict[str, float]
    recommendation: str


@dataclass(frozen=True)
class ResourceSample:
    """One sample: :data:`RESOURCE_FIELDS` plus the registered gauges, by name."""

    at: datetime
    process: str
    values: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "process": self.process, **self.values}


@dataclass(frozen=True)
class _Agg:
    calls: int
    failures: int
    total_ns: float
    min_ns: float
    max_ns: float
    quantiles_ns: tuple[float, ...]  # one per PERCENTILES
    errors: dict[str, int]


@dataclass(frozen=True)
class _Findings:
    window_s: float
    stats: list[OperationStats]
    source: str
    bottlenecks: list[Bottleneck]
    resources: dict[str, Any]
    hit_rate: float | None


class Monitor:
    """Times operations, samples resources, and turns both into statistics and advice.

    Thread-safe: any thread may record while another reads statistics.

    Args:
        settings: window length, sample and aggregation intervals, retention.
        clock: places calls in windows and stamps history (durations use
            ``perf_counter_ns``); defaults to the system clock.
        storage: where history goes; without one the monitor is memory-only.
        recorder: the calls timed by the engine's parts (a new one by default).
        resource_reader: returns the figures of :data:`RESOURCE_FIELDS`;
            defaults to :class:`engine.monitor.resources.ProcessReader` (psutil).
        thresholds: when bottleneck rules and recommendations fire.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        *,
        clock: Clock | None = None,
        storage: MonitorStorage | None = None,
        recorder: Recorder | None = None,
        resource_reader: Callable[[], Mapping[str, float]] | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.settings = settings
        self.thresholds = thresholds or Thresholds()
        self._clock: Clock = clock or SystemClock()
        self.recorder = recorder or Recorder(clock=self._clock)
        self._storage = storage
        self._reader = resource_reader or ProcessReader()
        self._process = f"{socket.gethostname()[:40]}:{os.getpid()}"
        self._lock = threading.Lock()
        self._gauges: dict[str, Callable[[], float | None]] = {}
        self._samples: deque[tuple[float, ResourceSample]] = deque(maxlen=MAX_SAMPLES)
        self._unsaved: deque[ResourceSample] = deque(maxlen=MAX_SAMPLES)
        self._interval_mono = self._clock.monotonic()
        self._interval_start = self._clock.now()
        self._last_prune: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- recording (the hot path) ------------------------------------------------

    def timed(self, operation: str, **labels: object) -> Timer:
        """A timer for one call (see :meth:`Recorder.timed`)."""
        return self.recorder.timed(operation, **labels)

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
            if found or source == "memory" or labels or self._storage is None:
                return found, "memory"
        if labels:
            raise ConfigError("labels", dict(labels), "history is aggregated per operation only")
        return self._history_stats(window, back), "history"

    def _memory_stats(
        self, window: float, back: int, labels: Labels | None
    ) -> list[OperationStats]:
        end = self._clock.monotonic() - back * window
        start = end - window
        snapshot = self.recorder.calls()
        aggs = {}
        for op, records in snapshot:
            inside = [r for r in records if start < r[0] <= end and _has_labels(r[3], labels)]
            if inside:
                aggs[op] = _aggregate(inside)
        return _build_stats(aggs, end - max(start, self.recorder.started))

    def _history_stats(self, window: float, back: int) -> list[OperationStats]:
        end = self._clock.now() - timedelta(seconds=back * window)
        start = end - timedelta(seconds=window)
        rows = self._read_aggregates(start, end)
        by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_op[row["operation"]].append(row)
        covered = self._observed_s(start, end, rows)
        return _build_stats({op: _merge_rows(group) for op, group in by_op.items()}, covered)

    def _observed_s(self, start: datetime, end: datetime, rows: list[dict[str, Any]]) -> float:
        """Seconds of the window that history saw some process alive: from the first to
        the last persisted interval or resource sample in it."""
        t = perf_resources
        query = select(func.min(t.c.at), func.max(t.c.at)).where(t.c.at > start, t.c.at <= end)
        moments = [as_utc(m) for m in self._query(query)[0] if m is not None]
        moments += [row["interval_start"] for row in rows] + [row["interval_end"] for row in rows]
        if not moments:
            return 0.0
        return (min(end, max(moments)) - max(start, min(moments))).total_seconds()

    # --- bottlenecks, recommendations, report -------------------------------------

    def bottlenecks(
        self, window_s: float | None = None, *, source: Source = "auto"
    ) -> list[Bottleneck]:
        """Rules that fire over the window, most severe first."""
        return self._analyse(window_s, source).bottlenecks

    def recommendations(
        self, window_s: float | None = None, *, source: Source = "auto"
    ) -> list[dict[str, Any]]:
        """Advice with ``category``, ``priority``, ``message`` and the ``values`` behind it."""
        return _recommend(self._analyse(window_s, source), self.thresholds)

    def report(self, window_s: float | None = None, *, source: Source = "auto") -> dict[str, Any]:
        """Summary, top operations, bottlenecks, resource summary and recommendations."""
        found = self._analyse(window_s, source)
        return {
            "window_s": found.window_s,
            "generated_at": self._clock.now(),
            "source": found.source,
            "summary": _summary(found.stats),
            "top_operations": [asdict(s) for s in found.stats[:TOP_OPERATIONS]],
            "bottlenecks": [asdict(b) for b in found.bottlenecks],
            "resources": {k: found.resources[k] for k in ("source", "count", "summary")},
            "recommendations": _recommend(found, self.thresholds),
        }

    def _analyse(self, window_s: float | None, source: Source) -> _Findings:
        window = self._window(window_s)
        current, used = self._window_stats(window, 0, source, None)
        previous, _ = self._window_stats(window, 1, used, None)
        resources = self.resources(window, source=source)
        hit_rate = self._hit_rate(resources["summary"], used)
        found = _find_bottlenecks(current, previous, hit_rate, self.thresholds)
        return _Findings(window, current, used, found, resources, hit_rate)

    def _hit_rate(self, summary: Mapping[str, Mapping[str, float]], source: str) -> float | None:
        """The window's average of the cache_hit_rate gauge; without samples, its value now
        (only for figures from memory: this process's cache says nothing about history)."""
        if "cache_hit_rate" in summary:
            return summary["cache_hit_rate"]["avg"]
        if source == "history":
            return None
        return self._read_gauges(("cache_hit_rate",)).get("cache_hit_rate")

    # --- resources and gauges -------------------------------------------------------

    def register_gauge(self, name: str, fn: Callable[[], float | None]) -> None:
        """Sample ``fn()`` with the resources under ``name`` (None or NaN: 'no value yet')."""
        if name in RESOURCE_FIELDS or name in ("at", "process"):
            raise ConfigError("gauge", name, "name clashes with a resource figure")
        with self._lock:
            self._gauges[name] = fn

    def sample_now(self) -> ResourceSample:
        """Read resources and gauges once, keep the sample and return it."""
        raw = self._reader()
        values = {name: float(raw.get(name, 0.0)) for name in RESOURCE_FIELDS}
        values.update(self._read_gauges())
        sample = ResourceSample(self._clock.now(), self._process, values)
        with self._lock:
            self._samples.append((self._clock.monotonic(), sample))
            if self._storage is not None:
                self._unsaved.append(sample)
        return sample

    def _read_gauges(self, names: tuple[str, ...] | None = None) -> dict[str, float]:
        with self._lock:
            gauges = [(n, fn) for n, fn in self._gauges.items() if names is None or n in names]
        values = {}
        for name, fn in gauges:
            try:
                value = fn()
            except Exception as exc:  # a broken gauge must not stop the sampler
                log.warning("gauge %s failed: %r", name, exc)
                continue
            if value is not None and not math.isnan(value):
                values[name] = float(value)
        return values

    def resources(
        self, window_s: float | None = None, *, source: Source = "auto"
    ) -> dict[str, Any]:
        """Samples over the window and, per figure and gauge, its ``avg`` and ``peak``."""
        window = self._window(window_s)
        samples, used = self._window_samples(window, source)
        return {
            "window_s": window,
            "source": used,
            "count": len(samples),
            "samples": [s.as_dict() for s in samples],
            "summary": _summarize(samples),
        }

    def _window_samples(self, window: float, source: str) -> tuple[list[ResourceSample], str]:
        if source != "history":
            start = self._clock.monotonic() - window
            with self._lock:
                found = [sample for at, sample in self._samples if at > start]
            if found or source == "memory" or self._storage is None:
                return found, "memory"
        return self._read_samples(self._clock.now() - timedelta(seconds=window)), "history"

    # --- background sampler -----------------------------------------------------------

    def start(self) -> None:
        """Start the sampler thread: a sample every ``sample_interval_s``, history every
        ``aggregate_interval_s``. Prunes history past retention first."""
        if self._thread is not None:
            return
        if self._storage is not None:
            self._prune()
        self._thread = threading.Thread(target=self._run, name="perf-monitor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the sampler and write what is not persisted yet. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.sample_now()  # a short-lived process still leaves its figures behind
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.sample_interval_s):
            try:
                self._tick()
            except Exception:  # keep sampling; the next tick may succeed
                log.exception("performance monitor tick failed")

    def _tick(self) -> None:
        self.sample_now()
        if self._clock.monotonic() - self._interval_mono >= self.settings.aggregate_interval_s:
            self._persist()

    # --- history ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the current partial interval and unsaved samples, and flush the storage."""
        if self._storage is not None:
            self._persist()
            self._storage.flush()

    def history(self, since: datetime, operation: str | None = None) -> list[dict[str, Any]]:
        """Persisted per-interval aggregates that end after ``since``, oldest first.

        Rows of every process that shares the database, each with its ``process``.
        """
        rows = self._read_aggregates(since, None, operation)
        for row in rows:
            row["errors"] = json.loads(row["errors"])
            row["mean_ms"] = row["total_ms"] / row["calls"]
            del row["sketch"]
        return rows

    def resource_history(self, since: datetime) -> list[dict[str, Any]]:
        """Persisted resource samples taken after ``since``, oldest first (all processes)."""
        return [s.as_dict() for s in self._read_samples(since)]

    def _persist(self) -> None:
        storage = self._storage
        if storage is None:
            return
        calls, samples, start, end = self._drain()
        rows = [self._aggregate_row(op, records, start, end) for op, records in calls.items()]
        if rows:
            storage.defer(perf_aggregates, rows)
        if samples:
            storage.defer(perf_resources, [_sample_row(s) for s in samples])
        if self._last_prune is None or self._clock.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self._prune()

    def _drain(self) -> tuple[dict[str, list[Record]], list[ResourceSample], datetime, datetime]:
        """Take the calls and samples added since the last drain; close the interval."""
        now, now_mono = self._clock.now(), self._clock.monotonic()
        calls = self.recorder.drain()
        with self._lock:
            samples = list(self._unsaved)
            self._unsaved.clear()
            start, self._interval_start, self._interval_mono = self._interval_start, now, now_mono
        return calls, samples, start, now

    def _aggregate_row(
        self, operation: str, records: list[Record], start: datetime, end: datetime
    ) -> dict[str, Any]:
        agg = _aggregate(records)
        p50, p95, p99 = (q / 1e6 for q in agg.quantiles_ns)
        return {
            "interval_start": start,
            "interval_end": end,
            "process": self._process,
            "operation": operation[:64],  # the column's width on PostgreSQL
            "calls": agg.calls,
            "failures": agg.failures,
            "total_ms": agg.total_ns / 1e6,
            "min_ms": agg.min_ns / 1e6,
            "max_ms": agg.max_ns / 1e6,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "errors": json.dumps(agg.errors),
            "sketch": json.dumps(Counter(_bucket(r[1]) for r in records)),
        }

    def _prune(self) -> None:
        assert self._storage is not None
        self._last_prune = self._clock.monotonic()
        cutoff = self._clock.now() - timedelta(days=self.settings.retention_days)
        with self._storage.transaction("perf_prune") as conn:
            conn.execute(delete(perf_aggregates).where(perf_aggregates.c.interval_end < cutoff))
            conn.execute(delete(perf_resources).where(perf_resources.c.at < cutoff))

    def _read_aggregates(
        self, start: datetime, end: datetime | None, operation: str | None = None
    ) -> list[dict[str, Any]]:
        t = perf_aggregates
        query = select(t).where(t.c.interval_end > start).order_by(t.c.interval_start, t.c.id)
        if end is not None:
            query = query.where(t.c.interval_end <= end)
        if operation is not None:
            query = query.where(t.c.operation == operation)
        rows = [dict(row._mapping) for row in self._query(query)]
        for row in rows:
            row["interval_start"] = as_utc(row["interval_start"])
            row["interval_end"] = as_utc(row["interval_end"])
        return rows

    def _read_samples(self, since: datetime) -> list[ResourceSample]:
        t = perf_resources
        query = select(t).where(t.c.at > since).order_by(t.c.at, t.c.id)
        samples = []
        for row in self._query(query):
            values = {name: float(getattr(row, name)) for name in RESOURCE_FIELDS}
            values.update(json.loads(row.gauges))
            samples.append(ResourceSample(as_utc(row.at), row.process, values))
        return samples

    def _query(self, query: Any) -> list[Any]:
        if self._storage is None:
            raise ConfigError("source", "history", "this monitor has no storage")
        try:
            with self._storage.engine.connect() as conn:
                return list(conn.execute(query))
        except SQLAlchemyError as exc:
            raise StorageError("perf history", str(exc).splitlines()[0]) from exc


# --- window arithmetic ------------------------------------------------------------------


def parse_window(text: str) -> float:
    """``"30s"``, ``"5m"``, ``"1h"``, ``"2d"``, ``"500ms"`` or bare seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if match is None or float(match[1]) <= 0:
        raise ConfigError("window", text, "expected a duration like 30s, 5m, 1h or 2d")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2] or "s"]
    return float(match[1]) * unit


def _has_labels(record_labels: Labels | None, wanted: Labels | None) -> bool:
    if not wanted:
        return True
    return record_labels is not None and all(record_labels.get(k) == v for k, v in wanted.items())


def _nearest_rank(ordered: list[int], percent: int) -> int:
    rank = -(-percent * len(ordered) // 100)  # ceil in integers: no float error at 95 % of 100
    return ordered[max(rank, 1) - 1]


def _aggregate(records: list[Record]) -> _Agg:
    durations = sorted(r[1] for r in records)
    errors = Counter(r[2] for r in records if r[2] is not None)
    return _Agg(
        calls=len(durations),
        failures=sum(errors.values()),
        total_ns=float(sum(durations)),
        min_ns=float(durations[0]),
        max_ns=float(durations[-1]),
        quantiles_ns=tuple(float(_nearest_rank(durations, p)) for p in PERCENTILES),
        errors=dict(errors),
    )


def _bucket(duration_ns: int) -> int:
    return math.ceil(math.log(duration_ns) / _LOG_GAMMA) if duration_ns > 1 else 0


def _sketch_quantile(sketch: Mapping[int, int], percent: int) -> float:
    rank = -(-percent * sum(sketch.values()) // 100)
    seen = 0
    for bucket in sorted(sketch):
        seen += sketch[bucket]
        if seen >= rank:
            return 2 * _GAMMA**bucket / (_GAMMA + 1)
    raise ValueError("empty sketch")


def _merge_rows(rows: list[dict[str, Any]]) -> _Agg:
    sketch: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for row in rows:
        sketch.update({int(k): v for k, v in json.loads(row["sketch"]).items()})
        errors.update(json.loads(row["errors"]))
    low = min(row["min_ms"] for row in rows) * 1e6
    high = max(row["max_ms"] for row in rows) * 1e6
    return _Agg(
        calls=sum(row["calls"] for row in rows),
        failures=sum(row["failures"] for row in rows),
        total_ns=sum(row["total_ms"] for row in rows) * 1e6,
        min_ns=low,
        max_ns=high,
        quantiles_ns=tuple(min(high, max(low, _sketch_quantile(sketch, p))) for p in PERCENTILES),
        errors=dict(errors),
    )


def _build_stats(aggs: Mapping[str, _Agg], covered_s: float) -> list[OperationStats]:
    covered_s = max(covered_s, 1.0)
    grand_total = sum(agg.total_ns for agg in aggs.values())
    found = [_to_stats(op, agg, covered_s, grand_total) for op, agg in aggs.items()]
    return sorted(found, key=lambda s: (-s.total_ms, s.operation))


def _to_stats(operation: str, agg: _Agg, covered_s: float, grand_total_ns: float) -> OperationStats:
    p50, p95, p99 = (q / 1e6 for q in agg.quantiles_ns)
    return OperationStats(
        operation=operation,
        calls=agg.calls,
        successes=agg.calls - agg.failures,
        failures=agg.failures,
        success_rate=(agg.calls - agg.failures) / agg.calls,
        calls_per_second=agg.calls / covered_s,
        mean_ms=agg.total_ns / agg.calls / 1e6,
        min_ms=agg.min_ns / 1e6,
        max_ms=agg.max_ns / 1e6,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        total_ms=agg.total_ns / 1e6,
        share_of_time=agg.total_ns / grand_total_ns if grand_total_ns > 0 else 0.0,
        errors=agg.errors,
    )


def _summarize(samples: list[ResourceSample]) -> dict[str, dict[str, float]]:
    columns: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        for name, value in sample.values.items():
            columns[name].append(value)
    return {name: {"avg": sum(v) / len(v), "peak": max(v)} for name, v in columns.items()}


def _summary(stats: list[OperationStats]) -> dict[str, Any]:
    calls = sum(s.calls for s in stats)
    failures = sum(s.failures for s in stats)
    total_ms = sum(s.total_ms for s in stats)
    return {
        "total_operations": calls,
        "distinct_operations": len(stats),
        "failures": failures,
        "success_rate": (calls - failures) / calls if calls else None,
        "mean_response_ms": total_ms / calls if calls else None,
    }


def _sample_row(sample: ResourceSample) -> dict[str, Any]:
    gauges = {k: v for k, v in sample.values.items() if k not in RESOURCE_FIELDS}
    return {
        "at": sample.at,
        "process": sample.process,
        **{name: sample.values[name] for name in RESOURCE_FIELDS},
        "gauges": json.dumps(gauges),
    }


# --- bottleneck rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class _RuleInput:
    thresholds: Thresholds
    previous: Mapping[str, OperationStats]
    operations: int


def _rule_slow_mean(s: OperationStats, c: _RuleInput) -> Bottleneck | None:
    t, mean_s = c.thresholds, s.mean_ms / 1000
    if mean_s <= t.slow_mean_s:
        return None
    high = mean_s > t.very_slow_mean_s
    limit = t.very_slow_mean_s if high else t.slow_mean_s
    return Bottleneck(
        operation=s.operation,
        rule="slow-mean",
        severity="high" if high else "medium",
        message=f"{s.operation} takes {mean_s:.1f} s on average (limit {limit:g} s)",
        values={"mean_s": mean_s, "threshold_s": limit, "calls": s.calls},
        recommendation="Cache its result (cache ttlMs), run it concurrently in the batch runner "
        "(maxConcurrentJobs), or profile it: every caller waits this long.",
    )


def _rule_success_rate(s: OperationStats, c: _RuleInput) -> Bottleneck | None:
    t = c.thresholds
    if s.calls <= t.min_calls_for_success_rate or s.success_rate >= t.success_rate_medium:
        return None
    high = s.success_rate < t.success_rate_high
    limit = t.success_rate_high if high else t.success_rate_medium
    top = max(s.errors, key=lambda e: s.errors[e], default="unknown")
    return Bottleneck(
        operation=s.operation,
        rule="low-success-rate",
        severity="high" if high else "medium",
        message=f"{s.operation} succeeds in {s.success_rate:.1%} of {s.calls} calls "
        f"(limit {limit:.0%}); most frequent error: {top}",
        values={"success_rate": s.success_rate, "threshold": limit, "calls": s.calls},
        recommendation=f"Fix the cause of {top}; if it is transient (timeouts, HTTP 5xx), "
        "raise retryAttempts and retryDelayMs so retries outlast it.",
    )


def _rule_tail(s: OperationStats, c: _RuleInput) -> Bottleneck | None:
    t = c.thresholds
    if s.calls < t.min_calls_for_tail or s.p99_ms <= t.tail_ratio * s.mean_ms:
        return None
    ratio = s.p99_ms / s.mean_ms
    return Bottleneck(
        operation=s.operation,
        rule="tail-latency",
        severity="medium",
        message=f"{s.operation} p99 {s.p99_ms:.1f} ms is {ratio:.1f}x its mean {s.mean_ms:.1f} ms",
        values={"p99_ms": s.p99_ms, "mean_ms": s.mean_ms, "threshold_ratio": t.tail_ratio},
        recommendation="Find the slow outliers: cold cache entries (enablePrefetch), lock "
        "contention, or a slow dependency that needs a timeout.",
    )


def _rule_rare(s: OperationStats, c: _RuleInput) -> Bottleneck | None:
    t = c.thresholds
    if s.calls <= t.min_calls_for_rare or s.calls_per_second >= t.rare_calls_per_s:
        return None
    return Bottleneck(
        operation=s.operation,
        rule="rare-calls",
        severity="low",
        message=f"{s.operation} runs {s.calls_per_second:.3f} times per second ({s.calls} calls)",
        values={"calls_per_second": s.calls_per_second, "threshold": t.rare_calls_per_s},
        recommendation="Group these calls into batches so that each one does not pay "
        "connection and cold-cache costs on its own.",
    )


def _rule_time_share(s: OperationStats, c: _RuleInput) -> Bottleneck | None:
    t = c.thresholds
    if c.operations < 2 or s.share_of_time <= t.time_share:
        return None
    return Bottleneck(
        operation=s.operation,
        rule="time-share",
        severity="medium",
        message=f"{s.operation} takes {s.share_of_time:.0%} of all measured time",
        values={"share_of_time": s.share_of_time, "threshold": t.time_share},
        recommendation="Optimise this operation first, it is the biggest lever; if it wraps "
        "other operations, look at the slowest of those.",
    )


def _rule_p95_growth(s: OperationStats, c: _RuleInput) -> Bottleneck | None:
    t, prev = c.thresholds, c.previous.get(s.operation)
    if prev is None or min(s.calls, prev.calls) < t.min_calls_for_growth:
        return None
    if s.p95_ms <= t.p95_growth * prev.p95_ms:
        return None
    return Bottleneck(
        operation=s.operation,
        rule="p95-regression",
        severity="medium",
        message=f"{s.operation} p95 grew from {prev.p95_ms:.1f} ms to {s.p95_ms:.1f} ms "
        "against the previous window",
        values={"p95_ms": s.p95_ms, "previous_p95_ms": prev.p95_ms, "threshold": t.p95_growth},
        recommendation="Check what changed since the previous window: load (calls per "
        "second), data size, cache evictions, or a slower source.",
    )


_RULES: tuple[Callable[[OperationStats, _RuleInput], Bottleneck | None], ...] = (
    _rule_slow_mean,
    _rule_success_rate,
    _rule_tail,
    _rule_rare,
    _rule_time_share,
    _rule_p95_growth,
)


def _rule_cache(hit_rate: float | None, t: Thresholds) -> Bottleneck | None:
    if hit_rate is None or hit_rate >= t.cache_hit_rate:
        return None
    high = hit_rate < t.cache_hit_rate_high
    return Bottleneck(
        operation="cache",
        rule="cache-hit-rate",
        severity="high" if high else "medium",
        message=f"cache hit rate {hit_rate:.0%} (limit {t.cache_hit_rate:.0%})",
        values={"hit_rate": hit_rate, "threshold": t.cache_hit_rate},
        recommendation="Raise the cache maxSize or ttlMs, keep enablePrefetch on, and check "
        "that cache keys do not vary needlessly.",
    )


def _find_bottlenecks(
    current: list[OperationStats],
    previous: list[OperationStats],
    hit_rate: float | None,
    t: Thresholds,
) -> list[Bottleneck]:
    given = _RuleInput(t, {s.operation: s for s in previous}, len(current))
    found = [b for s in current for rule in _RULES if (b := rule(s, given)) is not None]
    cache = _rule_cache(hit_rate, t)
    if cache is not None:
        found.append(cache)
    return sorted(found, key=lambda b: (_SEVERITY_ORDER[b.severity], b.operation, b.rule))


# --- recommendations -------------------------------------------------------------------------


def _advice(category: str, priority: Severity, message: str, **values: float) -> dict[str, Any]:
    return {"category": category, "priority": priority, "message": message, "values": values}


def _rec_caching(f: _Findings, t: Thresholds) -> dict[str, Any] | None:
    if f.hit_rate is None or f.hit_rate >= t.cache_hit_rate:
        return None
    message = (
        f"Cache hit rate is {f.hit_rate:.0%}, below {t.cache_hit_rate:.0%}: raise the cache "
        "maxSize or ttlMs and keep enablePrefetch on."
    )
    return _advice("Caching", "high", message, hit_rate=f.hit_rate, threshold=t.cache_hit_rate)


def _rec_memory(f: _Findings, t: Thresholds) -> dict[str, Any] | None:
    peak = _peak(f, "rss_mb")
    if peak is None or peak <= t.memory_peak_mb:
        return None
    message = (
        f"Resident memory peaked at {peak:.0f} MB, above {t.memory_peak_mb:.0f} MB: lower "
        "cacheMaxSize / maxSize or maxConcurrentJobs, and keep enableResourceThrottling on."
    )
    return _advice("Memory", "medium", message, peak_rss_mb=peak, threshold_mb=t.memory_peak_mb)


def _rec_performance(f: _Findings, t: Thresholds) -> dict[str, Any] | None:
    high = [b for b in f.bottlenecks if b.severity == "high"]
    if not high:
        return None
    names = ", ".join(sorted({f"{b.operation} ({b.rule})" for b in high}))
    message = f"High-severity bottlenecks: {names}. Fix these first; each carries its advice."
    return _advice("Performance", "high", message, high_bottlenecks=len(high))


def _rec_batching(f: _Findings, t: Thresholds) -> dict[str, Any] | None:
    slow_rare = [
        s
        for s in f.stats
        if s.mean_ms / 1000 > t.slow_mean_s and s.calls_per_second < t.rare_calls_per_s
    ]
    if not slow_rare:
        return None
    message = (
        f"{', '.join(s.operation for s in slow_rare)}: slow and rare; run them through the "
        "batch runner so that they overlap instead of running one after another."
    )
    slowest = max(s.mean_ms for s in slow_rare) / 1000
    return _advice(
        "Batch processing", "medium", message, operations=len(slow_rare), slowest_mean_s=slowest
    )


def _rec_reliability(f: _Findings, t: Thresholds) -> dict[str, Any] | None:
    failing = [b for b in f.bottlenecks if b.rule == "low-success-rate"]
    if not failing:
        return None
    worst = min(failing, key=lambda b: b.values["success_rate"])
    rate = worst.values["success_rate"]
    message = (
        f"{len(failing)} operation(s) fail too often, worst {worst.operation} at {rate:.1%}: "
        f"{worst.recommendation}"
    )
    priority: Severity = "high" if any(b.severity == "high" for b in failing) else "medium"
    return _advice(
        "Reliability", priority, message, operations=len(failing), lowest_success_rate=rate
    )


def _rec_cpu(f: _Findings, t: Thresholds) -> dict[str, Any] | None:
    peak = _peak(f, "cpu_percent")
    if peak is None or peak <= t.cpu_peak_percent:
        return None
    message = (
        f"CPU peaked at {peak:.0f} %: the work is no longer I/O-bound; lower maxConcurrentJobs "
        "or profile the operation with the largest share of time."
    )
    return _advice(
        "CPU", "medium", message, peak_cpu_percent=peak, threshold_percent=t.cpu_peak_percent
    )


def _rec_concurrency(f: _Findings, t: Thresholds) -> dict[str, Any] | None:
    summary = f.resources["summary"]
    if "batch_queue_depth" not in summary or "cpu_percent" not in summary:
        return None
    queue, cpu = summary["batch_queue_depth"]["avg"], summary["cpu_percent"]["avg"]
    if queue < 1 or cpu >= t.cpu_idle_percent:
        return None
    message = (
        f"Items waited in the batch queue (average {queue:.1f}) while CPU averaged {cpu:.0f} %: "
        "the checks are I/O-bound, raise maxConcurrentJobs."
    )
    return _advice(
        "Concurrency",
        "low",
        message,
        avg_queue_depth=queue,
        avg_cpu_percent=cpu,
        threshold_percent=t.cpu_idle_percent,
    )


def _peak(f: _Findings, name: str) -> float | None:
    figure = f.resources["summary"].get(name)
    return None if figure is None else float(figure["peak"])


_RECOMMENDATIONS: tuple[Callable[[_Findings, Thresholds], dict[str, Any] | None], ...] = (
    _rec_performance,
    _rec_caching,
    _rec_reliability,
    _rec_memory,
    _rec_cpu,
    _rec_batching,
    _rec_concurrency,
)


def _recommend(found: _Findings, t: Thresholds) -> list[dict[str, Any]]:
    advice = [a for rule in _RECOMMENDATIONS if (a := rule(found, t)) is not None]
    return sorted(advice, key=lambda a: _SEVERITY_ORDER[a["priority"]])
