"""Statistics: recorded calls and persisted intervals turned into per-operation figures.

- Percentiles of calls in memory use the nearest-rank method: pXX is the
  smallest duration with at least XX % of the calls at or below it, always an
  observed value.
- Persisted intervals carry a log-bucket sketch of their durations; merged
  sketches give percentiles within 1 % of the exact value.
- ``calls_per_second`` divides by the observed part of the window, counted as
  at least one second.
- ``share_of_time`` is the operation's total time over the total time of all
  operations; nested operations (a batch item around a fetch) count in both.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from engine.errors import ConfigError
from engine.monitor.recorder import Labels, Record
from engine.store.perf import PerfInterval, ResourceSample

__all__ = [
    "PERCENTILES",
    "Aggregate",
    "Figure",
    "OperationStats",
    "ReportSummary",
    "aggregate",
    "build_stats",
    "has_labels",
    "interval",
    "merge_intervals",
    "nearest_rank",
    "parse_window",
    "resource_summary",
    "sketch",
    "sketch_quantile",
    "summary",
]

PERCENTILES = (50, 95, 99)
_GAMMA = 1.02  # sketch bucket growth: a bucket's middle is within 1 % of any value in it
_LOG_GAMMA = math.log(_GAMMA)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Figure:
    """A resource figure's or gauge's average and peak over a window's samples, in the
    figure's own unit (``rss_mb`` in MiB, ``cpu_percent`` in percent of one core, ...)."""

    avg: float
    peak: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSummary:
    """A report's totals over every operation in the window."""

    total_operations: int
    """Calls of every operation."""
    distinct_operations: int
    """Operations called at least once."""
    failures: int
    success_rate: float | None
    """Calls that succeeded, 0 to 1; None without calls."""
    mean_response_ms: float | None
    """Mean duration of a call in milliseconds; None without calls."""


@dataclass(frozen=True)
class Aggregate:
    """The calls of one operation, reduced (durations in nanoseconds)."""

    calls: int
    failures: int
    total_ns: float
    min_ns: float
    max_ns: float
    quantiles_ns: tuple[float, ...]
    """One per :data:`PERCENTILES`."""
    errors: dict[str, int]


def parse_window(text: str) -> float:
    """``"30s"``, ``"5m"``, ``"1h"``, ``"2d"``, ``"500ms"`` or bare seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if match is None or float(match[1]) <= 0:
        raise ConfigError("window", text, "expected a duration like 30s, 5m, 1h or 2d")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2] or "s"]
    return float(match[1]) * unit


def has_labels(record_labels: Labels | None, wanted: Labels | None) -> bool:
    """Whether a call carries every wanted label (any call does when none is wanted)."""
    if not wanted:
        return True
    return record_labels is not None and all(record_labels.get(k) == v for k, v in wanted.items())


def nearest_rank(ordered: list[int], percent: int) -> int:
    """The smallest of ``ordered`` with at least ``percent`` % of the values at or below it."""
    rank = -(-percent * len(ordered) // 100)  # ceil in integers: no float error at 95 % of 100
    return ordered[max(rank, 1) - 1]


def aggregate(records: list[Record]) -> Aggregate:
    """Reduce recorded calls of one operation, with exact nearest-rank percentiles."""
    durations = sorted(r[1] for r in records)
    errors = Counter(r[2] for r in records if r[2] is not None)
    return Aggregate(
        calls=len(durations),
        failures=sum(errors.values()),
        total_ns=float(sum(durations)),
        min_ns=float(durations[0]),
        max_ns=float(durations[-1]),
        quantiles_ns=tuple(float(nearest_rank(durations, p)) for p in PERCENTILES),
        errors=dict(errors),
    )


def _bucket(duration_ns: int) -> int:
    return math.ceil(math.log(duration_ns) / _LOG_GAMMA) if duration_ns > 1 else 0


def sketch(records: Iterable[Record]) -> dict[int, int]:
    """Calls per log bucket of their duration (what intervals keep for merging)."""
    return dict(Counter(_bucket(r[1]) for r in records))


def sketch_quantile(counts: Mapping[int, int], percent: int) -> float:
    """The nearest-rank percentile of a sketch: the middle of the bucket it falls in."""
    rank = -(-percent * sum(counts.values()) // 100)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return 2 * _GAMMA**bucket / (_GAMMA + 1)
    raise ValueError("empty sketch")


def interval(
    operation: str, records: list[Record], *, start: datetime, end: datetime, process: str
) -> PerfInterval:
    """One interval's history row for the calls of one operation."""
    agg = aggregate(records)
    p50, p95, p99 = (q / 1e6 for q in agg.quantiles_ns)
    return PerfInterval(
        interval_start=start,
        interval_end=end,
        process=process,
        operation=operation,
        calls=agg.calls,
        failures=agg.failures,
        total_ms=agg.total_ns / 1e6,
        min_ms=agg.min_ns / 1e6,
        max_ms=agg.max_ns / 1e6,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        errors=agg.errors,
        sketch=sketch(records),
    )


def merge_intervals(rows: list[PerfInterval]) -> Aggregate:
    """Reduce persisted intervals of one operation; percentiles come from their sketches."""
    counts: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for row in rows:
        counts.update(row.sketch)
        errors.update(row.errors)
    low = min(row.min_ms for row in rows) * 1e6
    high = max(row.max_ms for row in rows) * 1e6
    return Aggregate(
        calls=sum(row.calls for row in rows),
        failures=sum(row.failures for row in rows),
        total_ns=sum(row.total_ms for row in rows) * 1e6,
        min_ns=low,
        max_ns=high,
        quantiles_ns=tuple(min(high, max(low, sketch_quantile(counts, p))) for p in PERCENTILES),
        errors=dict(errors),
    )


def build_stats(aggs: Mapping[str, Aggregate], covered_s: float) -> list[OperationStats]:
    """Figures per operation, slowest total first; ``covered_s`` is the observed time."""
    covered_s = max(covered_s, 1.0)
    grand_total = sum(agg.total_ns for agg in aggs.values())
    found = [_to_stats(op, agg, covered_s, grand_total) for op, agg in aggs.items()]
    return sorted(found, key=lambda s: (-s.total_ms, s.operation))


def _to_stats(
    operation: str, agg: Aggregate, covered_s: float, grand_total_ns: float
) -> OperationStats:
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


def resource_summary(samples: list[ResourceSample]) -> dict[str, Figure]:
    """Per figure and gauge, its average and peak over the samples."""
    columns: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        for name, value in sample.values.items():
            columns[name].append(value)
    return {name: Figure(avg=sum(v) / len(v), peak=max(v)) for name, v in columns.items()}


def summary(stats: list[OperationStats]) -> ReportSummary:
    """The report's totals over all operations."""
    calls = sum(s.calls for s in stats)
    failures = sum(s.failures for s in stats)
    total_ms = sum(s.total_ms for s in stats)
    return ReportSummary(
        total_operations=calls,
        distinct_operations=len(stats),
        failures=failures,
        success_rate=(calls - failures) / calls if calls else None,
        mean_response_ms=total_ms / calls if calls else None,
    )
