"""Reconciliation rules (DESIGN.md section 3) as pure functions.

Change detection compares every extracted metric. A change is significant
when it crosses its metric's threshold: a relative one (percent) for
membership, distinguished and payment metrics, an absolute one for club
counts. From 0 there is no percentage: the change is significant when its
absolute size meets the absolute threshold.

A job finalizes on the first of:

1. ``closing-ended``: the source publishes a later month's data.
2. ``stable``: for sources without data-month information only, no
   significant change over ``stability_period_days`` distinct as-of days. A
   source that says which month its data is for keeps the job open while it
   still publishes closing-period data (the month can still change).
3. ``window-reached``: the window, counted from the month end, is over:
   ``max_reconciliation_days`` (June: ``june_reconciliation_days``) plus
   automatic one-day extensions, up to ``max_extension_days``, while
   significant changes keep coming or the source still publishes the month.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta

from engine.domain.models import (
    CLUB_COUNT_METRICS,
    DISTINGUISHED_METRICS,
    OTHER_LEVEL_PREFIX,
    PAYMENT_METRICS,
    Job,
    MetricChange,
    Phase,
    Reason,
    month_end,
)
from engine.settings import ReconSettings


@dataclass(frozen=True)
class Threshold:
    relative_pct: float | None  # None: absolute only
    absolute: float

    def significant(self, old: float, new: float) -> bool:
        delta = abs(new - old)
        if delta == 0:
            return False
        if self.relative_pct is None or old == 0:
            return delta >= self.absolute
        return 100.0 * delta / abs(old) >= self.relative_pct


def thresholds(settings: ReconSettings) -> dict[str, Threshold]:
    """Threshold of each named metric. Not listed: the clubs of an unknown distinguished
    code (``distinguished_level_*``) use the distinguished threshold, any other metric
    the membership one (see :func:`detect_changes`)."""
    out = {m: Threshold(None, settings.club_count_threshold) for m in CLUB_COUNT_METRICS}
    out.update(
        {m: Threshold(settings.distinguished_threshold_pct, 1) for m in DISTINGUISHED_METRICS}
    )
    out.update({m: Threshold(settings.payments_threshold_pct, 1) for m in PAYMENT_METRICS})
    return out


def detect_changes(
    old: Mapping[str, float], new: Mapping[str, float], settings: ReconSettings
) -> tuple[MetricChange, ...]:
    """Every metric present in both snapshots that changed, with its significance."""
    table = thresholds(settings)
    default = Threshold(settings.membership_threshold_pct, 1)
    # The clubs of an unknown distinguished code (distinguished_level_h_clubs) are
    # distinguished counts; anything else not listed is judged as membership.
    level = Threshold(settings.distinguished_threshold_pct, 1)
    changes = []
    for m in sorted(old.keys() & new.keys()):
        was, now = old[m], new[m]
        if was != now:
            rule = table.get(m) or (level if m.startswith(OTHER_LEVEL_PREFIX) else default)
            changes.append(MetricChange(m, was, now, rule.significant(was, now)))
    return tuple(changes)


def window_days(month: str, settings: ReconSettings) -> int:
    june = month.endswith("-06")
    return settings.june_reconciliation_days if june else settings.max_reconciliation_days


def window_end(job: Job, settings: ReconSettings) -> date:
    """Last collection date of the job's window, extensions included."""
    return month_end(job.month) + timedelta(
        days=window_days(job.month, settings) + job.extension_days
    )


def record_check(job: Job, as_of: date, significant: bool, *, new_day: bool) -> Job:
    """The job's counters after one check of target-month data."""
    dates = job.significant_dates
    if significant and as_of not in dates:
        dates = (*dates, as_of)
    if significant:
        stable = 0
    else:
        stable = job.stable_days + (1 if new_day else 0)
    return replace(
        job,
        checks=job.checks + 1,
        significant_changes=job.significant_changes + (1 if significant else 0),
        significant_dates=dates,
        last_significant_as_of=as_of if significant else job.last_significant_as_of,
        stable_days=stable,
    )


def decide(
    job: Job, today: date, *, data_month_known: bool, settings: ReconSettings
) -> tuple[Job, Reason | None]:
    """After a check of target-month data on ``today``: extend, finalize, or keep going."""
    if not data_month_known and job.stable_days >= settings.stability_period_days:
        return job, Reason.STABLE
    if today < window_end(job, settings):
        return replace(job, phase=_phase(job, today, settings)), None
    if _may_extend(job, data_month_known, settings):
        job = replace(job, extension_days=job.extension_days + 1, phase=Phase.FINALIZING)
        return job, None
    return job, Reason.WINDOW_REACHED


def _may_extend(job: Job, data_month_known: bool, settings: ReconSettings) -> bool:
    if not settings.auto_extension_enabled or job.extension_days >= settings.max_extension_days:
        return False
    still_changing = (
        job.stable_days < settings.stability_period_days and job.significant_changes > 0
    )
    return still_changing or data_month_known


def _phase(job: Job, today: date, settings: ReconSettings) -> Phase:
    base_end = month_end(job.month) + timedelta(days=window_days(job.month, settings))
    if job.extension_days or today >= base_end:
        return Phase.FINALIZING
    return Phase.STABILIZING if job.stable_days > 0 else Phase.MONITORING


@dataclass(frozen=True)
class JobProgress:
    """Where a job stands: stability achieved, window left, and an estimated finish."""

    stability: float  # share of the stability period achieved, 0..1
    days_left: int  # days left in the window (extensions included)
    eta: date | None  # estimated finalization date, never after the window end


def progress(job: Job, today: date, settings: ReconSettings) -> JobProgress:
    """Progress and ETA of one job as of ``today``.

    The ETA assumes the quiet streak must still grow to the stability period,
    stretched by the recent rate of significant changes (per as-of day over the
    last week): each expected change restarts part of the streak.
    """
    end = window_end(job, settings)
    period = settings.stability_period_days
    stability = 1.0 if job.status.finished else min(1.0, job.stable_days / period)
    if job.status.finished:  # finished on its last collection date (simulated in a replay)
        return JobProgress(stability, 0, job.last_check_date)
    recent = [d for d in job.significant_dates if d > today - timedelta(days=7)]
    rate = len(recent) / 7
    remaining = max(0, period - job.stable_days) + math.ceil(rate * period)
    eta = min(end, today + timedelta(days=remaining))
    return JobProgress(stability, max(0, (end - today).days), eta)
