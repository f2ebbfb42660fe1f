"""The job store: runs, jobs, their timelines and the month-end snapshots.

:class:`JobStore` is what the reconciler and the console need;
:class:`SqlJobStore` keeps it in the database through a write policy
(:mod:`engine.store.writes`): its reads see the policy's queued writes on top
of the stored rows. :class:`~engine.store.cached.CachedJobStore` wraps it with
in-memory caches.

Job status transitions are committed before :meth:`JobStore.transition`
returns. What a crash loses of queued writes is rebuilt by re-checking
(entries are unique per job and as-of date: a re-check updates).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Hashable, Sequence
from datetime import date
from typing import Any, Protocol

from sqlalchemy import insert, select, true

from engine.clock import Clock, SystemClock
from engine.domain.models import Job, Snapshot, TimelineEntry
from engine.errors import NotFoundError
from engine.store import changes, rows
from engine.store.bulk import raw_columns, raw_rows
from engine.store.database import Database
from engine.store.schema import jobs, month_end_snapshots, runs, timeline
from engine.store.writes import Kind, Write, WritePolicy

Run = dict[str, Any]
"""A run's row: id, month, created_at, mode, source."""


class SaveProgress(Protocol):
    """:meth:`JobStore.save_progress` as a callable (the facade hands it out straight)."""

    def __call__(
        self,
        job: Job,
        entry: TimelineEntry | None,
        month_end: Snapshot | None,
        collected_on: date | None = None,
    ) -> None: ...


class JobStore(Protocol):
    """Runs, jobs, timelines and month-end snapshots."""

    def create_run(
        self, month: str, districts: Sequence[str], *, mode: str, source: str
    ) -> list[Job]:
        """A new run of ``month`` with one pending job per district (one transaction)."""
        ...

    def add_jobs(self, run_id: int, month: str, districts: Sequence[str]) -> list[Job]:
        """One pending job per district added to run ``run_id`` (districts that appeared
        after the run started); the run's jobs after it."""
        ...

    def latest_run(self, month: str) -> Run | None: ...

    def runs(self, month: str | None = None) -> list[Run]: ...

    def jobs(
        self, *, run_id: int | None = None, month: str | None = None, status: str | None = None
    ) -> list[Job]:
        """Jobs of a run, or of the latest run of a month, optionally by status."""
        ...

    def recent_jobs(self, district: str, limit: int = 12) -> list[Job]:
        """The district's latest jobs over every month and run, newest first."""
        ...

    def get_job(self, job_id: int) -> Job: ...

    def transition(self, job: Job) -> Job:
        """Commit a job's new status (and everything queued before it), then return it."""
        ...

    def save_progress(
        self,
        job: Job,
        entry: TimelineEntry | None,
        month_end: Snapshot | None,
        collected_on: date | None = None,
    ) -> None:
        """Record one check: its timeline entry, the job's counters, the month-end
        snapshot; ``collected_on`` is the check's collection date (see last_entry)."""
        ...

    def timeline(self, job_id: int) -> tuple[TimelineEntry, ...]: ...

    def timelines(self, job_ids: Sequence[int]) -> dict[int, tuple[TimelineEntry, ...]]:
        """Timelines of many jobs at once (the bulk load)."""
        ...

    def last_entry(
        self, job_id: int, month: str, before: date | None = None
    ) -> TimelineEntry | None:
        """The job's latest entry with data of ``month`` (or of no stated month), of the
        checks collected before ``before``: a check retried after its entry, but not
        its job's counters, was committed ignores its own entry."""
        ...

    def timeline_warnings(self, job_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The warnings on the jobs' timelines, in as-of order, of the jobs that have any."""
        ...

    def month_end_snapshots(self, month: str) -> dict[str, Snapshot]: ...


def _collected_before(day: date | None) -> Any:
    """Entries of checks collected before ``day`` (all, without one), and those written
    before their collection date was kept."""
    if day is None:
        return true()
    return timeline.c.collected_on.is_(None) | (timeline.c.collected_on < day)


def _newer_month_end(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool(new["as_of"] > old["as_of"])


# The keyed writes of a check, in the order a flush writes them.
ENTRIES = Kind("write_entry", order=0, write=rows.upsert_entries)
JOBS = Kind("save_job", order=1, write=rows.update_jobs)
MONTH_ENDS = Kind("month_end", order=2, write=rows.upsert_month_end, replaces=_newer_month_end)


class SqlJobStore:
    """The job store in the database. Thread-safe.

    Args:
        database: where rows live.
        writes: when writes reach it (its queued writes are read on top).
        clock: stamps month-end snapshots.
    """

    def __init__(
        self, database: Database, writes: WritePolicy, *, clock: Clock | None = None
    ) -> None:
        self._database = database
        self._writes = writes
        self._clock = clock or SystemClock()

    # --- runs and jobs ------------------------------------------------------------------------

    def create_run(
        self, month: str, districts: Sequence[str], *, mode: str, source: str
    ) -> list[Job]:
        now = self._clock.now()
        with self._database.transaction("create_run") as conn:
            result = conn.execute(
                insert(runs).values(month=month, created_at=now, mode=mode, source=source)
            )
            run_id = result.inserted_primary_key[0]  # type: ignore[index]
            new = [rows.new_job_row(run_id, d, month, now) for d in districts]
            if new:
                conn.execute(insert(jobs), new)
            changes.note(conn, months=(month,))  # the month's latest run and its listing
        return self.jobs(run_id=run_id)

    def add_jobs(self, run_id: int, month: str, districts: Sequence[str]) -> list[Job]:
        now = self._clock.now()
        if districts:
            with self._database.transaction("add_jobs") as conn:
                conn.execute(
                    insert(jobs), [rows.new_job_row(run_id, d, month, now) for d in districts]
                )
        return self.jobs(run_id=run_id)

    def latest_run(self, month: str) -> Run | None:
        with self._database.reading("latest_run") as conn:
            row = conn.execute(
                select(runs).where(runs.c.month == month).order_by(runs.c.id.desc()).limit(1)
            ).first()
        return dict(row._mapping) if row else None

    def runs(self, month: str | None = None) -> list[Run]:
        query = select(runs).order_by(runs.c.id.desc())
        if month:
            query = query.where(runs.c.month == month)
        with self._database.reading("runs") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def jobs(
        self, *, run_id: int | None = None, month: str | None = None, status: str | None = None
    ) -> list[Job]:
        return self.jobs_through(
            self.latest_run, self.stored_jobs, run_id=run_id, month=month, status=status
        )

    def jobs_through(
        self,
        latest_run: Callable[[str], Run | None],
        stored_jobs: Callable[[int | None], list[Job]],
        *,
        run_id: int | None,
        month: str | None,
        status: str | None,
    ) -> list[Job]:
        """:meth:`jobs`, reading the latest run and the stored jobs with these (a
        cache's), the queued changes on top."""
        if run_id is None and month is not None:
            latest = latest_run(month)
            if latest is None:
                return []
            run_id = latest["id"]
        queued = self._writes.queued(JOBS)  # first: see last_entry
        return self._queued_jobs(stored_jobs(run_id), status, queued)

    def stored_jobs(self, run_id: int | None) -> list[Job]:
        """The stored jobs of a run (of every run: None), without queued changes."""
        query = select(*rows.JOB_COLUMNS).order_by(jobs.c.id)
        if run_id is not None:
            query = query.where(jobs.c.run_id == run_id)
        with self._database.reading("load_jobs") as conn:
            return list(map(rows.job_from_row, raw_rows(conn, query)))

    def _queued_jobs(
        self, found: list[Job], status: str | None, queued: dict[Hashable, Any]
    ) -> list[Job]:
        """``found`` with ``queued`` changes on top, optionally by status."""
        overlaid = [queued.get(j.id, j) for j in found] if queued else found
        return [j for j in overlaid if status is None or j.status == status]

    def recent_jobs(self, district: str, limit: int = 12) -> list[Job]:
        query = select(*rows.JOB_COLUMNS).where(jobs.c.district == district)
        with self._database.reading("recent_jobs") as conn:
            found = raw_rows(conn, query.order_by(jobs.c.id.desc()).limit(limit))
            return list(map(rows.job_from_row, found))

    def get_job(self, job_id: int) -> Job:
        return self.queued_job(job_id) or self.stored_job(job_id)

    def queued_job(self, job_id: int) -> Job | None:
        """The job's uncommitted state, if it has one."""
        found: Job | None = self._writes.queued_value(JOBS, job_id)
        return found

    def stored_job(self, job_id: int) -> Job:
        if not rows.storable_id(job_id):
            raise NotFoundError("job", job_id)
        with self._database.reading("get_job") as conn:
            row = conn.execute(select(*rows.JOB_COLUMNS).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFoundError("job", job_id)
        return rows.job_from_row(row)

    def transition(self, job: Job) -> Job:
        self._writes.commit(
            "transition", lambda conn: rows.update_jobs(conn, [job]), forget=(JOBS, job.id, job)
        )
        return job

    def save_progress(
        self,
        job: Job,
        entry: TimelineEntry | None,
        month_end: Snapshot | None,
        collected_on: date | None = None,
    ) -> None:
        """Record one check (see :class:`JobStore`). An immediate policy commits the
        entry, the job and the snapshot one by one; a deferred one queues them."""
        if entry is None:
            writes: tuple[Write, ...] = ((JOBS, job.id, job),)
        else:  # the usual check: a tuple built at once (this runs at every check)
            key, queued = (entry.job_id, entry.as_of), (entry, collected_on)
            writes = ((ENTRIES, key, queued), (JOBS, job.id, job))
        if month_end is not None:
            row = rows.month_end_row(month_end, job.id, self._clock.now())
            writes = (*writes, (MONTH_ENDS, (row["district"], row["month"]), row))
        self._writes.put(writes)

    # --- timelines and month-end snapshots ----------------------------------------------

    def timeline(self, job_id: int) -> tuple[TimelineEntry, ...]:
        queued = self._queued_entries().get(job_id)  # first: see last_entry
        return rows.overlay(self.stored_timelines([job_id])[job_id], queued)

    def queued_timeline(
        self, job_id: int, stored: tuple[TimelineEntry, ...]
    ) -> tuple[TimelineEntry, ...]:
        """A stored timeline with the job's queued entries on top."""
        return rows.overlay(stored, self._queued_entries().get(job_id))

    def timelines(self, job_ids: Sequence[int]) -> dict[int, tuple[TimelineEntry, ...]]:
        """Timelines of many jobs in one query per 500 jobs (the bulk load)."""
        queued = self._queued_entries()  # first: see last_entry
        stored = self.stored_timelines(job_ids)
        if not queued:
            return stored
        return {j: rows.overlay(entries, queued.get(j)) for j, entries in stored.items()}

    def stored_timelines(self, job_ids: Sequence[int]) -> dict[int, tuple[TimelineEntry, ...]]:
        """Stored timelines. Rows come in (job_id, as_of) order, the order of the unique
        index, so that SQLite reads them off the index without sorting and they group
        by job."""
        out: dict[int, tuple[TimelineEntry, ...]] = dict.fromkeys(job_ids, ())
        with self._database.reading("timelines") as conn:  # one transaction: one snapshot
            for chunk in rows.chunks(list(job_ids), 500):
                query = (
                    select(*rows.ENTRY_COLUMNS)
                    .where(timeline.c.job_id.in_(chunk))
                    .order_by(timeline.c.job_id, timeline.c.as_of)
                )
                # Streamed, a batch of rows at a time; a job's rows may span two.
                for entries in map(rows.entries_from_columns, raw_columns(conn, query)):
                    for job_id, group in itertools.groupby(entries, rows.JOB_ID):
                        out[job_id] += tuple(group)
        return out

    def last_entry(
        self, job_id: int, month: str, before: date | None = None
    ) -> TimelineEntry | None:
        """The job's latest entry of ``month`` (or of no stated month) collected before
        ``before`` (see :class:`JobStore`): one query for the stored one, queued entries
        on top (they are committed with their job: never a retried check's own)."""
        # Queued first: an entry a flush commits after this read is in the database
        # read below; read the other way round it could be in neither.
        queued = [
            e for e in self._queued_entries().get(job_id, ()) if e.data_month in (month, None)
        ]
        query = (
            select(*rows.ENTRY_COLUMNS)
            .where(timeline.c.job_id == job_id)
            .where((timeline.c.data_month == month) | timeline.c.data_month.is_(None))
            .where(_collected_before(before))
            .order_by(timeline.c.as_of.desc())
            .limit(1)
        )
        with self._database.reading("last_entry") as conn:
            row = conn.execute(query).first()
        stored = rows.entries_from_columns(list(zip(row, strict=True)))[0] if row else None
        if not queued:
            return stored
        return max([*queued, *([stored] if stored else [])], key=lambda e: e.as_of)

    def timeline_warnings(self, job_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """See :class:`JobStore`: one query per 500 jobs that reads only the entries with
        warnings (most have none), queued entries on top."""
        by_day: dict[int, dict[date, tuple[str, ...]]] = {}
        with self._database.reading("timeline_warnings") as conn:
            for chunk in rows.chunks(list(job_ids), 500):
                query = (
                    select(timeline.c.job_id, timeline.c.as_of, timeline.c.warnings)
                    .where(timeline.c.job_id.in_(chunk))
                    .where(timeline.c.warnings.is_not(None))
                )
                for job_id, as_of, text in conn.execute(query):
                    by_day.setdefault(job_id, {})[as_of] = rows.warnings_from_text(text)
        wanted = set(job_ids)
        for job_id, entries in self._queued_entries().items():
            if job_id in wanted:  # a queued entry replaces the stored one of its as-of
                by_day.setdefault(job_id, {}).update((e.as_of, e.warnings) for e in entries)
        found = {
            j: tuple(w for _, ws in sorted(days.items()) for w in ws) for j, days in by_day.items()
        }
        return {j: ws for j, ws in found.items() if ws}

    def month_end_snapshots(self, month: str) -> dict[str, Snapshot]:
        self._writes.flush()
        query = select(month_end_snapshots).where(month_end_snapshots.c.month == month)
        with self._database.reading("month_end") as conn:
            return {
                r.district: Snapshot(
                    r.district, r.as_of, r.month, json.loads(r.metrics), "month-end"
                )
                for r in conn.execute(query)
            }

    def _queued_entries(self) -> dict[int, list[TimelineEntry]]:
        """Entries not committed yet (queued or being flushed), by job."""
        by_job: dict[int, list[TimelineEntry]] = {}
        for entry, _ in self._writes.queued(ENTRIES).values():
            by_job.setdefault(entry.job_id, []).append(entry)
        return by_job


__all__ = ["ENTRIES", "JOBS", "MONTH_ENDS", "JobStore", "Run", "SaveProgress", "SqlJobStore"]
