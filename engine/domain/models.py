"""Domain values: snapshots of a district's figures, jobs and timeline entries.

All values are frozen: what the cache or storage hands out cannot be changed
by the caller. Months are ``YYYY-MM`` strings; dates are :class:`datetime.date`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from engine.errors import ConfigError

# Matched in full (``fullmatch``) and ASCII only: ``\d`` and ``$`` would let in other
# scripts' digits and a trailing newline.
DISTRICT_RE = re.compile(r"[A-Za-z0-9]{1,4}")
MONTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})")

# Metric names extracted from exports, grouped by the threshold that applies.
MEMBERSHIP_METRICS = ("membership", "membership_base", "net_growth", "new_members")
CLUB_COUNT_METRICS = (
    "clubs",
    "paid_clubs",
    "active_clubs",
    "suspended_clubs",
    "low_clubs",
    "ineligible_clubs",
)
DISTINGUISHED_METRICS = (
    "distinguished_clubs",
    "select_distinguished_clubs",
    "presidents_distinguished_clubs",
    "smedley_distinguished_clubs",
    "total_distinguished_clubs",
    "dcp_goals",
)
PAYMENT_METRICS = ("total_payments", "payment_base")
OTHER_LEVEL_PREFIX = "distinguished_level_"
"""Metrics counting the clubs of a distinguished code the parser does not know
(``distinguished_level_h_clubs``): judged by the distinguished threshold."""
ALL_METRICS = MEMBERSHIP_METRICS + CLUB_COUNT_METRICS + DISTINGUISHED_METRICS + PAYMENT_METRICS


class JobStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class BatchStatus(StrEnum):
    """A stored batch: ``running`` until every item finished and was recorded."""

    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """Its process stopped before the end: a later batch took over its unfinished
    items, or its month lease expired (abandoned; its unfinished items stay queued
    for a resume). Each item shows how its work ended (or that it was taken over)."""

    @property
    def finished(self) -> bool:
        """No item of the batch will run again (finished or cancelled)."""
        return self is not BatchStatus.RUNNING


class ItemState(StrEnum):
    """An item of a batch; the counters of a batch always add up to its total."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """The item will not run again."""
        return self in _FINISHED_ITEMS


_FINISHED_ITEMS = frozenset(
    {ItemState.SUCCEEDED, ItemState.FAILED, ItemState.SKIPPED, ItemState.CANCELLED}
)


class Phase(StrEnum):
    MONITORING = "monitoring"
    STABILIZING = "stabilizing"
    FINALIZING = "finalizing"


class Reason(StrEnum):
    CLOSING_ENDED = "closing-ended"
    STABLE = "stable"
    WINDOW_REACHED = "window-reached"


def normalize_district(value: str) -> str:
    """The one spelling of a district id: ``"02"`` -> ``"2"``, ``"f"`` -> ``"F"``.

    Every district id the engine reads (input, file names, URLs, export rows)
    goes through here, so ``"02"`` and ``"2"`` are one district. Raises
    ValueError unless the id is 1-4 ASCII letters or digits.
    """
    if not isinstance(value, str) or not DISTRICT_RE.fullmatch(value):
        raise ValueError(f"invalid district {str(value)[:40]!r}")
    return str(int(value)) if value.isdigit() else value.upper()


def validate_district(value: str) -> str:
    """A district id from a user, normalized (:func:`normalize_district`); else ConfigError."""
    try:
        return normalize_district(value)
    except ValueError:
        raise ConfigError(
            "district", value, "expected 1-4 letters or digits, e.g. 42 or F"
        ) from None


def validate_month(value: str) -> str:
    """A ``YYYY-MM`` month between 2000-01 and 2100-12, ASCII digits only; else ConfigError."""
    m = MONTH_RE.fullmatch(value) if isinstance(value, str) else None
    if not m or not (1 <= int(m.group(2)) <= 12) or not (2000 <= int(m.group(1)) <= 2100):
        raise ConfigError("month", value, "expected YYYY-MM between 2000-01 and 2100-12")
    return value


def month_end(month: str) -> date:
    """Last day of a ``YYYY-MM`` month."""
    y, m = int(month[:4]), int(month[5:7])
    first_next = date(y + (m == 12), m % 12 + 1, 1)
    return first_next - timedelta(days=1)


def next_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    return f"{y + (m == 12)}-{m % 12 + 1:02d}"


def month_of(d: date) -> str:
    return f"{d.year}-{d.month:02d}"


def program_year(month: str) -> str:
    """Toastmasters program year (July to June) of a month, e.g. ``2024-2025``."""
    y, m = int(month[:4]), int(month[5:7])
    start = y if m >= 7 else y - 1
    return f"{start}-{start + 1}"


@dataclass(frozen=True)
class Snapshot:
    """A district's figures as a source published them on one as-of date.

    ``data_month`` is the month the figures belong to, read from the export's
    footer; ``None`` when the source gives no data-month information.
    ``warnings`` are what the parser kept but a user should know about (e.g. an
    unknown distinguished code), each naming the file.
    """

    district: str
    as_of: date
    data_month: str | None
    metrics: Mapping[str, float]
    source: str = ""
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))


@dataclass(frozen=True)
class MetricChange:
    metric: str
    old: float
    new: float
    significant: bool

    @property
    def delta(self) -> float:
        return self.new - self.old

    @property
    def pct(self) -> float | None:
        """Relative change in percent; ``None`` from 0 (never "0 %")."""
        return None if self.old == 0 else 100.0 * (self.new - self.old) / abs(self.old)


@dataclass(frozen=True, slots=True)  # 104 bytes an entry instead of 328: bulk reads keep many
class TimelineEntry:
    """One check of a job: the figures as of ``as_of``, what changed since the last one.

    ``warnings`` are the checked snapshot's (:attr:`Snapshot.warnings`), each naming
    the export file, e.g. an unknown distinguished code that was kept.
    """

    job_id: int
    as_of: date
    checked_at: datetime
    data_month: str | None
    metrics: Mapping[str, float]
    changes: tuple[MetricChange, ...]
    significant: bool
    note: str = ""
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    @classmethod
    def from_stored(
        cls,
        job_id: int,
        as_of: date,
        checked_at: datetime,
        data_month: str | None,
        metrics: dict[str, float],
        changes: tuple[MetricChange, ...],
        significant: bool,
        note: str,
        warnings: tuple[str, ...],
    ) -> TimelineEntry:
        """An entry read back from storage, built without the dataclass ``__init__``
        (half the cost: bulk reads build thousands). ``metrics`` must be a new dict
        that nothing else holds; it is wrapped, not copied."""
        entry = object.__new__(cls)
        _set_job_id(entry, job_id)
        _set_as_of(entry, as_of)
        _set_checked_at(entry, checked_at)
        _set_data_month(entry, data_month)
        _set_metrics(entry, MappingProxyType(metrics))
        _set_changes(entry, changes)
        _set_significant(entry, significant)
        _set_note(entry, note)
        _set_warnings(entry, warnings)
        return entry


# Each slot's own setter: the frozen class's __setattr__ refuses, and object.__setattr__
# looks the name up first.
_SLOT_SETTERS = [getattr(TimelineEntry, f.name).__set__ for f in fields(TimelineEntry)]
(_set_job_id, _set_as_of, _set_checked_at, _set_data_month, _set_metrics, _set_changes,
 _set_significant, _set_note, _set_warnings) = _SLOT_SETTERS  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One district reconciled for one target month within one run."""

    id: int
    run_id: int
    district: str
    month: str
    status: JobStatus = JobStatus.PENDING
    phase: Phase | None = None
    reason: Reason | None = None
    error: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    final_as_of: date | None = None
    last_check_date: date | None = None
    checks: int = 0
    significant_changes: int = 0
    stable_days: int = 0
    extension_days: int = 0
    last_significant_as_of: date | None = None
    attempts: int = 0
    significant_dates: tuple[date, ...] = field(default=())

    @classmethod
    def from_stored(cls, *values: Any) -> Job:
        """A job read back from storage, its fields in order, built without the
        dataclass ``__init__``, which sets each of the 19 fields through
        ``object.__setattr__`` (twice the cost; bulk reads build a run's jobs)."""
        job = object.__new__(cls)
        object.__setattr__(job, "__dict__", dict(zip(_JOB_FIELDS, values, strict=True)))
        return job


_JOB_FIELDS = tuple(f.name for f in fields(Job))
