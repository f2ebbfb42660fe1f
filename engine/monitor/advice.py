"""Advice: bottleneck rules over per-operation figures, and recommendations over the findings.

Each rule is a small pure function; thresholds decide when it fires (strict
comparisons), and each needs a minimum sample, so that a handful of calls
raises no alarm. Bottlenecks come most severe first, then by operation and rule;
recommendations most urgent first. A recommendation that follows from a
bottleneck carries that bottleneck's severity: one finding, one severity.

Operations recorded for a user interface's own reads (named ``origin:operation``,
see :func:`engine.instrument.reads_for`) are not the engine's work: no rule
looks at them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from engine.instrument import origin_of
from engine.monitor.stats import Figure, OperationStats

__all__ = [
    "INFORMATIONAL",
    "SEVERITY_ORDER",
    "Bottleneck",
    "Findings",
    "Recommendation",
    "Severity",
    "Thresholds",
    "find_bottlenecks",
    "recommend",
]

Severity = Literal["high", "medium", "low"]
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
"""Severities, the most severe first: sort by ``SEVERITY_ORDER[severity]``."""
INFORMATIONAL = frozenset({"rare-calls"})
"""Rules whose findings are worth knowing but no bottleneck (low; a UI shows them apart)."""


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
    """Fewer than ``rare_calls_per_s`` with more calls than this: low 'rare-calls' (see
    :data:`INFORMATIONAL`)."""
    time_share: float = 0.5
    """Share of all measured time above this: medium 'time-share'."""
    min_calls_for_time_share: int = 1
    """The time-share rule needs at least this many calls of the operation."""
    p95_growth: float = 1.5
    """p95 above this times the previous window's: medium 'p95-regression'."""
    min_calls_for_growth: int = 5
    """Both windows need at least this many calls to compare p95."""
    cache_hit_rate: float = 0.8
    """Hit rate below this: medium 'cache-hit-rate' and a high 'Caching' recommendation."""
    cache_hit_rate_high: float = 0.5
    """Hit rate below this: the 'cache-hit-rate' bottleneck is high."""
    min_cache_reads: int = 200
    """When the number of cache reads is known, the hit-rate rule needs at least this many."""
    memory_peak_mb: float = 1024.0
    """Peak resident memory above this: 'Memory' recommendation."""
    cpu_peak_percent: float = 90.0
    """Peak CPU above this: 'CPU' recommendation."""
    cpu_idle_percent: float = 50.0
    """Average CPU below this while items queue: 'Concurrency' recommendation."""


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """A rule that fired, the numbers that made it fire and what to do about it."""

    operation: str
    rule: str
    severity: Severity
    message: str
    values: dict[str, float]
    recommendation: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What to change, how urgent it is, and the numbers behind it."""

    category: str
    """Caching, Memory, Performance, Batch processing, Reliability, CPU or Concurrency."""
    priority: Severity
    message: str
    values: dict[str, float]


@dataclass(frozen=True)
class Findings:
    """What the recommendations look at: one window's figures and the bottlenecks found."""

    stats: list[OperationStats]
    bottlenecks: list[Bottleneck]
    resources: Mapping[str, Figure]
    """Per resource figure and gauge, its average and peak over the window."""
    hit_rate: float | None
    """The cache hit rate over the window, if known."""


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
    if c.operations < 2 or s.calls < t.min_calls_for_time_share or s.share_of_time <= t.time_share:
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


def _rule_cache(hit_rate: float | None, reads: int | None, t: Thresholds) -> Bottleneck | None:
    if hit_rate is None or hit_rate >= t.cache_hit_rate:
        return None
    if reads is not None and reads < t.min_cache_reads:
        return None  # a few reads after a start say nothing about the cache
    high = hit_rate < t.cache_hit_rate_high
    return Bottleneck(
        operation="cache",
        rule="cache-hit-rate",
        severity="high" if high else "medium",
        message=f"cache hit rate {hit_rate:.0%} (limit {t.cache_hit_rate:.0%})",
        values={"hit_rate": hit_rate, "threshold": t.cache_hit_rate}
        | ({"reads": reads} if reads is not None else {}),
        recommendation="Raise the cache maxSize or ttlMs, keep enablePrefetch on, and check "
        "that cache keys do not vary needlessly.",
    )


def find_bottlenecks(
    current: list[OperationStats],
    previous: list[OperationStats],
    hit_rate: float | None,
    t: Thresholds,
    *,
    cache_reads: int | None = None,
) -> list[Bottleneck]:
    """The rules that fire on ``current`` (``previous``: the window before), most severe first.

    ``cache_reads``: the reads behind ``hit_rate``, when known (see
    :attr:`Thresholds.min_cache_reads`). Operations of a UI's own reads are left out.
    """
    engine = [s for s in current if origin_of(s.operation) is None]
    given = _RuleInput(t, {s.operation: s for s in previous}, len(engine))
    found = [b for s in engine for rule in _RULES if (b := rule(s, given)) is not None]
    cache = _rule_cache(hit_rate, cache_reads, t)
    if cache is not None:
        found.append(cache)
    return sorted(found, key=lambda b: (SEVERITY_ORDER[b.severity], b.operation, b.rule))


# --- recommendations -------------------------------------------------------------------------


def _advice(category: str, priority: Severity, message: str, **values: float) -> Recommendation:
    return Recommendation(category, priority, message, values)


def _rec_caching(f: Findings, t: Thresholds) -> Recommendation | None:
    found = next((b for b in f.bottlenecks if b.rule == "cache-hit-rate"), None)
    if found is None:
        return None
    rate, priority = found.values["hit_rate"], found.severity
    message = (
        f"Cache hit rate is {rate:.0%}, below {t.cache_hit_rate:.0%}: raise the cache "
        "maxSize or ttlMs and keep enablePrefetch on."
    )
    return _advice("Caching", priority, message, hit_rate=rate, threshold=t.cache_hit_rate)


def _rec_memory(f: Findings, t: Thresholds) -> Recommendation | None:
    peak = _peak(f, "rss_mb")
    if peak is None or peak <= t.memory_peak_mb:
        return None
    message = (
        f"Resident memory peaked at {peak:.0f} MB, above {t.memory_peak_mb:.0f} MB: lower "
        "cacheMaxSize / maxSize or maxConcurrentJobs, and keep enableResourceThrottling on."
    )
    return _advice("Memory", "medium", message, peak_rss_mb=peak, threshold_mb=t.memory_peak_mb)


def _rec_performance(f: Findings, t: Thresholds) -> Recommendation | None:
    high = [b for b in f.bottlenecks if b.severity == "high"]
    if not high:
        return None
    names = ", ".join(sorted({f"{b.operation} ({b.rule})" for b in high}))
    message = f"High-severity bottlenecks: {names}. Fix these first; each carries its advice."
    return _advice("Performance", "high", message, high_bottlenecks=len(high))


def _rec_batching(f: Findings, t: Thresholds) -> Recommendation | None:
    slow_rare = [
        s
        for s in f.stats
        if s.mean_ms / 1000 > t.slow_mean_s
        and s.calls_per_second < t.rare_calls_per_s
        and origin_of(s.operation) is None
    ]
    if not slow_rare:
        return None
    message = (
        f"{', '.join(s.operation for s in slow_rare)}: slow and rare; run them through the "
        "batch runner so that they overlap instead of running one after another."
    )
    slowest = max(s.mean_ms for s in slow_rare) / 1000
    names = {s.operation for s in slow_rare}
    levels = [b.severity for b in f.bottlenecks if b.rule == "slow-mean" and b.operation in names]
    priority: Severity = min(levels, key=SEVERITY_ORDER.__getitem__, default="medium")
    return _advice(
        "Batch processing", priority, message, operations=len(slow_rare), slowest_mean_s=slowest
    )


def _rec_reliability(f: Findings, t: Thresholds) -> Recommendation | None:
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


def _rec_cpu(f: Findings, t: Thresholds) -> Recommendation | None:
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


def _rec_concurrency(f: Findings, t: Thresholds) -> Recommendation | None:
    summary = f.resources
    if "batch_queue_depth" not in summary or "cpu_percent" not in summary:
        return None
    queue, cpu = summary["batch_queue_depth"].avg, summary["cpu_percent"].avg
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


def _peak(f: Findings, name: str) -> float | None:
    figure = f.resources.get(name)
    return None if figure is None else figure.peak


_RECOMMENDATIONS: tuple[Callable[[Findings, Thresholds], Recommendation | None], ...] = (
    _rec_performance,
    _rec_caching,
    _rec_reliability,
    _rec_memory,
    _rec_cpu,
    _rec_batching,
    _rec_concurrency,
)


def recommend(found: Findings, t: Thresholds) -> list[Recommendation]:
    """The recommendations that apply, most urgent first."""
    advice = [a for rule in _RECOMMENDATIONS if (a := rule(found, t)) is not None]
    return sorted(advice, key=lambda a: SEVERITY_ORDER[a.priority])
