"""One vocabulary for where a month's close stands.

:func:`month_status` is the one place that answers "is this month live": the
``recon`` CLI, the dashboard and the console's start guard all ask it. A month
is live while a batch of this process works it (:data:`MonthStatus.RUNNING`)
or while some of its jobs are unfinished with no batch here working them
(:data:`MonthStatus.OPEN`: the run was stopped, its closing period was still
open on the day replayed up to, or another process works it). A month whose
districts have all stopped is closed only when every one of them completed:
with some failed or cancelled it is :data:`MonthStatus.INCOMPLETE`, not final.

:func:`replay_bound` is the one place that answers "up to which collection
date may a run of this month go": never after today (a collection on day D
sees data as of D-1), and not at all for a month that has not ended.
"""

from __future__ import annotations

import enum
from datetime import date, timedelta
from typing import Protocol

from engine.batch.runner import BatchInfo, BatchProgress
from engine.domain.models import JobStatus, month_end, month_of, validate_month
from engine.errors import ConfigError
from engine.reconcile import MonthProgress

MONTH_END_BATCH = "month-end {month}"
"""Name of the batch :meth:`~engine.app.console.Console.start_batch` submits for a month."""

RECENT_BATCHES = 20  # batches looked at for the one working a month (newest first)


class MonthStatus(enum.StrEnum):
    """Where a month's close stands."""

    NOT_STARTED = "not-started"
    """No run of the month yet."""
    RUNNING = "running"
    """A batch of this process is working the month."""
    OPEN = "open"
    """Some districts are not final and no batch of this process works them."""
    INCOMPLETE = "incomplete"
    """Every district has stopped, but some failed or were cancelled: their figures
    are not final until the month is run again."""
    CLOSED = "closed"
    """Every district of the latest run completed: the month's figures are final."""

    @property
    def live(self) -> bool:
        """Whether the month's figures may still change."""
        return self in (MonthStatus.RUNNING, MonthStatus.OPEN)


class BatchReader(Protocol):
    """What :func:`month_batch` needs of the batch runner."""

    def list_batches(self, limit: int = 100) -> list[BatchInfo]: ...

    def progress(self, batch_id: int) -> BatchProgress: ...


class MonthReader(Protocol):
    """What :func:`month_status` needs: the console, or anything that reads the same."""

    @property
    def batch(self) -> BatchReader: ...

    def month_progress(self, month: str) -> MonthProgress: ...


def latest_ended_month(day: date) -> str:
    """The newest month a collection on ``day`` can see data of: the one before ``day``'s."""
    return month_of(day.replace(day=1) - timedelta(days=1))


def replay_bound(month: str, *, until: date | None, today: date) -> date:
    """The last collection date a run of ``month`` may replay: ``until``, else ``today``.

    Raises ConfigError for an ``until`` after ``today`` (nothing is published
    for a later day) and for a month that has not ended by the bound (its first
    collection, the day after its end, has not happened).
    """
    month = validate_month(month)
    if until is not None and until > today:
        raise ConfigError(
            "until", until.isoformat(), f"is after today ({today}): no data is published yet"
        )
    bound = until or today
    if month_end(month) >= bound:
        raise ConfigError(
            "month",
            month,
            f"has not ended by {bound} (a collection on day D sees data as of D-1): "
            f"the first month that can be reconciled is {latest_ended_month(bound)}",
        )
    return bound


def live_progress(batches: BatchReader, batch_id: int) -> BatchProgress | None:
    """A batch's live counters, or None for a batch this process does not run."""
    try:
        return batches.progress(batch_id)
    except ConfigError:  # not a batch of this process: its stored counts are all there is
        return None


def month_batch(reader: MonthReader, month: str) -> int | None:
    """The newest month-end batch of ``month`` that this process runs and has not finished.

    A cancelled batch counts until its running items have stopped: two
    replays of one job must never run at once.
    """
    name = MONTH_END_BATCH.format(month=validate_month(month))
    for info in reader.batch.list_batches(limit=RECENT_BATCHES):
        if info.name == name:
            progress = live_progress(reader.batch, info.batch_id)
            if progress is not None and not progress.done:
                return info.batch_id
    return None


def status_of(progress: MonthProgress, batch_id: int | None) -> MonthStatus:
    """The rule behind :func:`month_status`, for callers that hold both parts already."""
    if batch_id is not None:
        return MonthStatus.RUNNING
    if progress.total == 0:
        return MonthStatus.NOT_STARTED
    if progress.by_status.get(JobStatus.ACTIVE) or progress.by_status.get(JobStatus.PENDING):
        return MonthStatus.OPEN  # some districts have not stopped
    stopped = progress.by_status.get(JobStatus.FAILED, 0) + progress.by_status.get(
        JobStatus.CANCELLED, 0
    )
    return MonthStatus.INCOMPLETE if stopped else MonthStatus.CLOSED


def month_status(reader: MonthReader, month: str) -> MonthStatus:
    """Where ``month``'s close stands, seen from this process."""
    month = validate_month(month)
    return status_of(reader.month_progress(month), month_batch(reader, month))


__all__ = [
    "MONTH_END_BATCH",
    "BatchReader",
    "MonthReader",
    "MonthStatus",
    "latest_ended_month",
    "live_progress",
    "month_batch",
    "month_status",
    "replay_bound",
    "status_of",
]
