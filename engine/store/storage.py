"""The engine's store as one object: :class:`Storage`.

It puts together what the composition root chose (see
``engine.app.console.open_storage``):

- a :class:`~engine.store.database.Database` (SQLAlchemy Core: SQLite file by
  default, WAL; PostgreSQL by URL);
- a write policy (:mod:`engine.store.writes`): ``Immediate`` in naive mode,
  one commit per write, the "before" of the before/after comparison;
  ``Deferred`` in optimized mode, writes queued, coalesced and flushed in one
  transaction by size, by delay, on :meth:`Storage.flush` and on :meth:`Storage.close`;
- a job store (:mod:`engine.store.jobs`), wrapped in optimized mode by the
  in-memory caches of :mod:`engine.store.cached`.

In both modes job status transitions are committed before
:meth:`Storage.transition` returns, and a failed flush keeps its writes queued:
nothing is dropped. Readers in this process see queued writes. What a crash
loses of the queue is rebuilt by re-checking.

The generic methods (:meth:`~Storage.transaction`, :meth:`~Storage.reading`,
:meth:`~Storage.write`, :meth:`~Storage.defer`, :meth:`~Storage.flush`,
:meth:`~Storage.pending_writes`) are for the other stores (batches, monitor).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, Table

from engine.domain.models import Job, Snapshot, TimelineEntry
from engine.readtrace import ReadTrace
from engine.store.cached import CacheFigures, ReadCache
from engine.store.database import Database
from engine.store.jobs import JobStore, Run, SaveProgress
from engine.store.writes import WritePolicy


@dataclass(frozen=True, slots=True)
class StorageCacheStats(CacheFigures):
    """The storage cache's figures, with the writes not committed yet and the
    statements sent so far."""

    pending_writes: int
    roundtrips: int


class Storage:
    """The engine's store. Thread-safe; one instance per process and URL.

    Args:
        database: the database.
        writes: when writes reach it (shared with ``jobs``).
        jobs: runs, jobs, timelines and month-end snapshots.
        cache: the storage cache ``jobs`` reads through (its figures, and
            :meth:`clear_cache`); a disabled one when ``jobs`` has none.
    """

    save_progress: SaveProgress
    """Record one check: its timeline entry, the job's counters, the month-end
    snapshot (see :meth:`JobStore.save_progress`)."""

    def __init__(
        self, *, database: Database, writes: WritePolicy, jobs: JobStore, cache: ReadCache
    ) -> None:
        self.database = database
        self._writes = writes
        self._jobs = jobs
        self._cache = cache
        self._closed = threading.Event()
        # The per-check write, called straight (no frame of this facade): it is the
        # hottest call of the engine and the storage benchmark's.
        self.save_progress = jobs.save_progress

    # --- generic API (used by the other stores) ----------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and the other stores' raw reads)."""
        return self.database.engine

    @property
    def roundtrips(self) -> int:
        return self.database.roundtrips

    def transaction(self, operation: str = "transaction") -> AbstractContextManager[Connection]:
        """A connection inside one transaction, committed on exit (write lock held)."""
        return self.database.transaction(operation)

    def reading(self, operation: str = "read") -> AbstractContextManager[Connection]:
        return self.database.reading(operation)

    def write(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows and commit before returning."""
        self.database.write(table, rows)

    def defer(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue inserts for the next flush (naive mode: write at once)."""
        self._writes.defer(table, rows)

    def flush(self) -> int:
        """Write everything queued in one transaction; return how many writes.

        On failure the writes stay queued (newer queued values win) and the
        error is raised.
        """
        return self._writes.flush()

    def pending_writes(self) -> int:
        """Writes not committed yet (queued, or in a flush under way)."""
        return self._writes.pending()

    def ping(self) -> None:
        """Raise :class:`~engine.errors.StorageError` unless the database answers."""
        self.database.ping()

    def close(self) -> None:
        """Write what is queued and close the connections. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._writes.close()
        finally:
            self.database.close()

    # --- the storage cache -----------------------------------------------------------------

    def clear_cache(self) -> int:
        """Drop the storage cache (LRU and index); return the entries dropped."""
        return self._cache.clear()

    def forget(self, job_ids: set[int], months: set[str]) -> None:
        """Drop from the storage cache what another process changed (the jobs and
        timelines of ``job_ids``, the runs and job listings of ``months``)."""
        self._cache.forget(job_ids, months)

    def cache_trace(self) -> ReadTrace:
        """The storage cache's recent reads (the engine's job and timeline reads)."""
        return self._cache.trace

    def cache_stats(self) -> StorageCacheStats:
        return StorageCacheStats(
            **asdict(self._cache.figures()),
            pending_writes=self.pending_writes(),
            roundtrips=self.roundtrips,
        )

    # --- runs and jobs (see JobStore) ----------------------------------------------------

    def create_run(
        self, month: str, districts: Sequence[str], *, mode: str, source: str
    ) -> list[Job]:
        """A new run of ``month`` with one pending job per district (one transaction)."""
        return self._jobs.create_run(month, districts, mode=mode, source=source)

    def add_jobs(self, run_id: int, month: str, districts: Sequence[str]) -> list[Job]:
        """Pending jobs for ``districts`` added to run ``run_id``; the run's jobs after it."""
        return self._jobs.add_jobs(run_id, month, districts)

    def latest_run(self, month: str) -> Run | None:
        return self._jobs.latest_run(month)

    def runs(self, month: str | None = None) -> list[Run]:
        return self._jobs.runs(month)

    def jobs(
        self, *, run_id: int | None = None, month: str | None = None, status: str | None = None
    ) -> list[Job]:
        """Jobs of a run, or of the latest run of a month, optionally by status."""
        return self._jobs.jobs(run_id=run_id, month=month, status=status)

    def recent_jobs(self, district: str, limit: int = 12) -> list[Job]:
        """The district's latest jobs over every month and run, newest first."""
        return self._jobs.recent_jobs(district, limit)

    def get_job(self, job_id: int) -> Job:
        return self._jobs.get_job(job_id)

    def transition(self, job: Job) -> Job:
        """Commit a job's new status (and everything queued before it), then return it."""
        return self._jobs.transition(job)

    def timeline(self, job_id: int) -> tuple[TimelineEntry, ...]:
        return self._jobs.timeline(job_id)

    def timelines(self, job_ids: Sequence[int]) -> dict[int, tuple[TimelineEntry, ...]]:
        """Timelines of many jobs at once (the bulk load)."""
        return self._jobs.timelines(job_ids)

    def last_entry(
        self, job_id: int, month: str, before: date | None = None
    ) -> TimelineEntry | None:
        """The job's latest entry with data of ``month`` (or of no stated month) of the
        checks collected before ``before`` (see :meth:`JobStore.last_entry`)."""
        return self._jobs.last_entry(job_id, month, before)

    def timeline_warnings(self, job_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The warnings on the jobs' timelines, in as-of order, of the jobs that have any."""
        return self._jobs.timeline_warnings(job_ids)

    def month_end_snapshots(self, month: str) -> dict[str, Snapshot]:
        return self._jobs.month_end_snapshots(month)


__all__ = ["Storage", "StorageCacheStats"]
