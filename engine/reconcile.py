"""The orchestrator: starts months, runs checks, finalizes jobs.

A *check* fetches a district's export for a collection date, compares it
with the job's last target-month snapshot, records a timeline entry and
applies the rules. A *replay* (what ``recon run`` does) walks a job's
collection dates day by day, from the day after month end (or the day after
its last check, when resuming) until the job finalizes; the collection date is
the simulated "today" of each check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from engine.cancel import NEVER, CancelToken
from engine.clock import Clock
from engine.domain import rules
from engine.domain.models import Job, JobStatus, Phase, Reason, Snapshot, TimelineEntry, month_end
from engine.errors import GapError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.settings import ReconSettings
from engine.store.jobs import JobStore

if TYPE_CHECKING:
    from engine.sources.base import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonthProgress:
    """A month's latest run: counts by status, phase and completion reason, the share of
    districts with final figures (completed; a failed or cancelled one has none) and the
    latest ETA of the rest."""

    month: str
    run_id: int | None
    total: int
    by_status: dict[str, int]
    by_phase: dict[str, int]
    by_reason: dict[str, int]
    percent_finalized: float
    projected_close: date | None


class Reconciler:
    """Drives jobs to completion. Thread-safe: each job is worked by one thread at a time.

    ``keep_last_entry``: a replay keeps the job's last entry in memory from one check
    to the next; False reads it back from the store at every check (naive mode, the
    "before" of the before/after comparison).
    """

    def __init__(
        self,
        *,
        storage: JobStore,
        source: Source,
        settings: ReconSettings,
        clock: Clock,
        instrument: Instrument = NO_INSTRUMENT,
        on_write: Callable[[Job], None] | None = None,
        keep_last_entry: bool = True,
    ) -> None:
        self.storage = storage
        self.source = source
        self.settings = settings
        self.clock = clock
        self._instrument = instrument
        self._on_write = on_write
        self._keep_last = keep_last_entry

    # --- months ---------------------------------------------------------------------------

    def start_month(self, month: str, districts: Sequence[str], *, mode: str) -> list[Job]:
        """Jobs to work for ``month``: the latest run's if unfinished, else a new run."""
        latest = self.storage.jobs(month=month)
        if latest and any(not j.status.finished for j in latest):
            return latest
        return self.storage.create_run(month, districts, mode=mode, source=self.source.name)

    def month_progress(self, month: str, today: date | None = None) -> MonthProgress:
        jobs = self.storage.jobs(month=month)
        latest = self.storage.latest_run(month)
        by_status = _count(j.status.value for j in jobs)
        by_phase = _count(j.phase.value for j in jobs if j.status == JobStatus.ACTIVE and j.phase)
        by_reason = _count(j.reason.value for j in jobs if j.reason)
        completed = by_status.get(JobStatus.COMPLETED, 0)  # failed or cancelled: no figures
        return MonthProgress(
            month=month,
            run_id=latest["id"] if latest else None,
            total=len(jobs),
            by_status=by_status,
            by_phase=by_phase,
            by_reason=by_reason,
            percent_finalized=100.0 * completed / len(jobs) if jobs else 0.0,
            projected_close=self._projected_close(jobs),
        )

    def _projected_close(self, jobs: Sequence[Job]) -> date | None:
        dates = [self.job_progress(j).eta for j in jobs]
        known = [d for d in dates if d is not None]
        return max(known) if known else None

    def job_progress(self, job: Job) -> rules.JobProgress:
        today = job.last_check_date or month_end(job.month)
        return rules.progress(job, today, self.settings)

    # --- one job ----------------------------------------------------------------------------

    def replay(
        self,
        job_id: int,
        token: CancelToken = NEVER,
        *,
        until: date | None = None,
        gaps_before: date | None = None,
    ) -> Job:
        """Check ``job_id`` day after day until it finalizes, or until the collection
        date ``until`` (today, for a month still closing): the job then stays active.

        Days before ``gaps_before`` are recorded as gaps without asking the source:
        a live dashboard serves only today's exports, so a day the watcher missed
        cannot be fetched any more.
        """
        job = self.storage.get_job(job_id)
        if job.status.finished:
            return job
        job = self._transition(
            replace(
                job,
                status=JobStatus.ACTIVE,
                phase=job.phase or Phase.MONITORING,
                attempts=job.attempts + 1,
            )
        )
        # Kept in memory between checks, or read back at every check (naive, the "before").
        keep = self._keep_last
        day = (job.last_check_date or month_end(job.month)) + timedelta(days=1)
        last = self.storage.last_entry(job.id, job.month, day) if keep else None
        limit = rules.window_end(job, self.settings) + timedelta(
            days=self.settings.max_extension_days
        )
        if until is not None:
            limit = min(limit, until)
        while not job.status.finished and day <= limit:
            token.check()
            if gaps_before is not None and day < gaps_before:
                job, kept = self._gap(job, day, last), last
            else:
                job, kept = self.check(job, day, token, last=last)
            token.progress()
            last = kept if keep else None
            day += timedelta(days=1)
        return job

    def check(
        self,
        job: Job,
        collection_date: date,
        token: CancelToken = NEVER,
        *,
        last: TimelineEntry | None = None,
    ) -> tuple[Job, TimelineEntry | None]:
        """One check of ``job`` on ``collection_date``; returns the job and its last entry.

        ``last`` is the job's last target-month entry when the caller keeps it
        (optimized mode); otherwise it is read from storage.
        """
        with self._timed("job.check", district=job.district):
            snap = self._fetch(job, collection_date, token)
            if snap is None:
                return self._gap(job, collection_date, last), last
            if last is None:  # collected before today: a retried check ignores its own entry
                last = self.storage.last_entry(job.id, job.month, collection_date)
            if snap.data_month is not None and snap.data_month > job.month:
                return self._finish(job, collection_date, Reason.CLOSING_ENDED, last, snap), last
            if snap.data_month is not None and snap.data_month < job.month:
                self._save(replace(job, last_check_date=collection_date), None, None)
                return replace(job, last_check_date=collection_date), last
            job, entry = self._record(job, collection_date, snap, last)
            return self._settle_archive(job, collection_date, entry), entry

    def _fetch(self, job: Job, collection_date: date, token: CancelToken) -> Snapshot | None:
        """The district's snapshot, or None when the source has no export that day (a gap)."""
        with self._timed("source.fetch", district=job.district):
            try:
                return self.source.fetch(job.district, job.month, collection_date, token)
            except GapError as gap:
                log.info("gap: %s", gap)
                return None

    # --- gaps and archives -----------------------------------------------------------------

    def _gap(self, job: Job, today: date, last: TimelineEntry | None) -> Job:
        """A collection date the source has no export for (a collector missed it).

        Not a failure: the day counts as checked (a resumed replay goes on after
        it), nothing is recorded on the timeline, and the window runs on, so a
        job whose later days are all gaps still finalizes at its window's end
        with the last snapshot it has.
        """
        job, reason = rules.decide(
            replace(job, last_check_date=today),
            today,
            data_month_known=True,  # gaps come from export sources, which name the month
            settings=self.settings,
        )
        self._save(job, None, None)
        if reason is None:
            return job
        if last is None:
            last = self.storage.last_entry(job.id, job.month, today)
        return self._finish(job, today, reason, last, None)

    def _settle_archive(self, job: Job, today: date, entry: TimelineEntry) -> Job:
        """Finalize on target-month data as of a day after the job's longest window.

        An archive download (a closed program year's data as of the download day)
        cannot be revised within the closing period any more: it is final, and the
        closing period is over.
        """
        if job.status.finished or entry.data_month != job.month:
            return job
        longest = rules.window_days(job.month, self.settings) + self.settings.max_extension_days
        if entry.as_of <= month_end(job.month) + timedelta(days=longest):
            return job
        return self._finish(job, today, Reason.CLOSING_ENDED, entry, None)

    def _record(
        self, job: Job, today: date, snap: Snapshot, last: TimelineEntry | None
    ) -> tuple[Job, TimelineEntry]:
        with self._timed("detect_changes", district=job.district):
            changes = (
                rules.detect_changes(last.metrics, snap.metrics, self.settings) if last else ()
            )
        significant = any(c.significant for c in changes)
        new_day = last is None or snap.as_of != last.as_of
        entry = TimelineEntry(
            job_id=job.id,
            as_of=snap.as_of,
            checked_at=self.clock.now(),
            data_month=snap.data_month,
            metrics=snap.metrics,
            changes=changes,
            significant=significant,
            note="first snapshot" if last is None else "",
            warnings=snap.warnings,
        )
        job = rules.record_check(job, snap.as_of, significant, new_day=new_day and last is not None)
        job, reason = rules.decide(
            replace(job, last_check_date=today),
            today,
            data_month_known=snap.data_month is not None,
            settings=self.settings,
        )
        month_end_snap = snap if snap.data_month == job.month or snap.data_month is None else None
        if month_end_snap is not None and snap.data_month is None:
            month_end_snap = replace(snap, data_month=job.month)
        self._save(job, entry, month_end_snap, today)
        if reason is not None:
            job = self._finish(job, today, reason, entry, None)
        return job, entry

    def _finish(
        self,
        job: Job,
        today: date,
        reason: Reason,
        last: TimelineEntry | None,
        next_snap: Snapshot | None,
    ) -> Job:
        with self._timed("job.finalize", district=job.district):
            if next_snap is not None:
                note = f"source now publishes {next_snap.data_month}: closing period over"
                entry = TimelineEntry(
                    job.id,
                    next_snap.as_of,
                    self.clock.now(),
                    next_snap.data_month,
                    {},
                    (),
                    False,
                    note,
                    next_snap.warnings,  # the later month's file: still one to look at
                )
                self._save(job, entry, None, today)
            done = replace(
                job,
                status=JobStatus.COMPLETED,
                phase=None,
                reason=reason,
                last_check_date=today,
                final_as_of=last.as_of if last else None,
                completed_at=self.clock.now(),
                checks=job.checks + (1 if next_snap is not None else 0),
            )
            return self._transition(done)

    def fail(self, job_id: int, error: str) -> Job:
        """Mark a job failed (its retries are exhausted), keeping the error."""
        job = self.storage.get_job(job_id)
        if job.status.finished:
            return job
        failed = replace(
            job, status=JobStatus.FAILED, phase=None, error=error, completed_at=self.clock.now()
        )
        return self._transition(failed)

    def cancel(self, job_id: int) -> Job:
        job = self.storage.get_job(job_id)
        if job.status.finished:
            return job
        cancelled = replace(
            job, status=JobStatus.CANCELLED, phase=None, completed_at=self.clock.now()
        )
        return self._transition(cancelled)

    def _save(
        self,
        job: Job,
        entry: TimelineEntry | None,
        snap: Snapshot | None,
        collected_on: date | None = None,
    ) -> None:
        self.storage.save_progress(job, entry, snap, collected_on)
        if self._on_write:
            self._on_write(job)

    def _transition(self, job: Job) -> Job:
        self.storage.transition(job)
        if self._on_write:
            self._on_write(job)
        return job

    def _timed(self, operation: str, **labels: str) -> AbstractContextManager[object]:
        return self._instrument.timed(operation, **labels)


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


__all__ = ["MonthProgress", "Reconciler"]
