"""When an alert fires: small pure rules over a job's states and the monitor's figures.

Each rule answers for one evaluation; :class:`engine.notify.perf.PerfWatch` makes a
condition fire once per occurrence, and the event keys make it happen once in the
database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.domain import rules
from engine.domain.models import Job
from engine.errors import ConfigError
from engine.settings import ReconSettings

__all__ = [
    "OperationP95",
    "PerfFigures",
    "hit_rate_low",
    "late_revision",
    "memory_high",
    "missed_ticks",
    "p95_thresholds",
    "slow_operations",
]


# --- close alerts ------------------------------------------------------------------------


def late_revision(before: Job, after: Job, settings: ReconSettings) -> str | None:
    """Why the check that turned ``before`` into ``after`` brought a late revision, or None.

    A *late revision* is a significant change (``after.significant_changes`` grew)
    recorded by a check of target-month data when the job already looked settled:

    - ``"after-stable"``: the job had been stable for at least one as-of day, i.e.
      ``before.stable_days >= 1``: at least one as-of day without a significant change
      came after its last significant change (or after its first snapshot); or
    - ``"after-projected-close"``: the check's collection date (``after.last_check_date``)
      is after the close projected for the job before the check
      (:func:`engine.domain.rules.progress` of ``before`` on its last collection date).
      A projected close is never later than the job's window end, so with a stable streak
      of 0 this is a change arriving during an automatic extension; the month's projected
      close is the latest of its jobs', so every change after it is caught here too.

    The first check of a job (no earlier snapshot) is never a revision.
    """
    if after.significant_changes <= before.significant_changes:
        return None
    if before.last_check_date is None or after.last_check_date is None:
        return None
    if before.stable_days >= 1:
        return "after-stable"
    eta = rules.progress(before, before.last_check_date, settings).eta
    if eta is not None and after.last_check_date > eta:
        return "after-projected-close"
    return None


def missed_ticks(last_tick: datetime, now: datetime, every_s: float) -> int:
    """Whole ticks a watcher that ticks every ``every_s`` seconds missed since ``last_tick``.

    The next tick was due ``every_s`` after the last one; each further ``every_s``
    without a tick is one more missed.
    """
    if every_s <= 0:
        raise ConfigError("every", every_s, "expected a positive number of seconds")
    late = (now - last_tick) / timedelta(seconds=every_s)
    return max(0, int(late))


# --- performance alerts ----------------------------------------------------------------------


@dataclass(frozen=True)
class OperationP95:
    """One operation's p95 over the monitor's window."""

    operation: str
    p95_ms: float
    calls: int


@dataclass(frozen=True, kw_only=True)
class PerfFigures:
    """What the performance alerts look at, read in one go."""

    cache_hits: int
    """Cache hits since the cache started (a counter: windows are differences)."""
    cache_misses: int
    operations: Sequence[OperationP95]
    rss_mb: float | None
    """Resident memory now (None: not sampled)."""
    memory_threshold_mb: float
    """The batch runner's memoryThresholdMB."""


def hit_rate_low(hits: int, misses: int, *, threshold: float, min_reads: int) -> bool | None:
    """Whether the hit rate of a window is below ``threshold``; None when the window has
    fewer than ``min_reads`` reads (too few to judge: 6 reads say nothing)."""
    reads = hits + misses
    if reads < min_reads:
        return None
    return hits / reads < threshold


def slow_operations(
    operations: Sequence[OperationP95],
    *,
    default_ms: float,
    per_operation: Mapping[str, float],
    min_calls: int,
) -> dict[str, bool]:
    """Per operation with at least ``min_calls`` calls: whether its p95 is above its
    threshold (``per_operation``'s, else ``default_ms``). Strict comparison."""
    return {
        op.operation: op.p95_ms > per_operation.get(op.operation, default_ms)
        for op in operations
        if op.calls >= min_calls
    }


def memory_high(rss_mb: float | None, threshold_mb: float, pct: float) -> bool | None:
    """Whether resident memory is above ``pct`` % of ``threshold_mb`` (None: not sampled)."""
    if rss_mb is None:
        return None
    return rss_mb > threshold_mb * pct / 100


def p95_thresholds(text: str) -> dict[str, float]:
    """Per-operation p95 thresholds from ``'source.fetch=2000, job.check=5000'`` (ms)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            ms = float(value)
        except ValueError:
            ms = float("nan")
        if not sep or not name.strip() or not ms > 0 or ms == float("inf"):
            raise ConfigError("notify.p95_thresholds", part, "expected operation=milliseconds")
        out[name.strip()] = ms
    return out
