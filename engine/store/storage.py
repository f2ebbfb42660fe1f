"""Storage on SQLAlchemy Core: SQLite file by default (WAL), PostgreSQL by URL.

Two modes side by side:

- ``naive``: every write is its own committed transaction and every read goes
  to the database. This is the "before" of the before/after comparison.
- ``optimized``: per-check writes (timeline entries, job progress, month-end
  snapshots, generic deferred inserts) are queued, coalesced by key and written
  in one transaction by a flusher thread when ``batch_size`` are pending (by the
  writer itself past sixteen times that), after ``max_write_delay_ms``, on
  :meth:`flush` and on :meth:`close`. Readers in this
  process see queued writes (they are overlaid on database reads). Jobs and
  timelines are kept in an LRU of ``cache_max_size`` entries and index queries
  (jobs of a month, latest run) in a TTL cache of ``index_cache_timeout_ms``.

In both modes job status transitions are committed before :meth:`transition`
returns, and a failed flush keeps its writes queued: nothing is dropped.
What a crash loses of the queue is rebuilt by re-checking (entries are unique
per job and as-of date, so a re-check updates instead of duplicating).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

import cachetools
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import Clock, SystemClock
from engine.domain.models import (
    Job,
    JobStatus,
    MetricChange,
    Phase,
    Reason,
    Snapshot,
    TimelineEntry,
)
from engine.errors import NotFoundError, StorageError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.settings import StorageSettings
from engine.store.bulk import Prepared, dialect_insert, raw_columns, raw_rows
from engine.store.schema import jobs, metadata, month_end_snapshots, runs, timeline
from engine.store.urls import parse_url

log = logging.getLogger(__name__)

_INLINE_FLUSH_FACTOR = 16  # see Storage._size_trigger

_JOB_PROGRESS_COLUMNS = (
    "status",
    "phase",
    "reason",
    "error",
    "completed_at",
    "final_as_of",
    "last_check_date",
    "checks",
    "significant_changes",
    "stable_days",
    "extension_days",
    "last_significant_as_of",
    "attempts",
    "significant_dates",
)


class Storage:
    """The engine's database. Thread-safe; one instance per process and URL."""

    def __init__(
        self,
        settings: StorageSettings,
        *,
        clock: Clock | None = None,
        instrument: Instrument = NO_INSTRUMENT,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.optimized = settings.mode == "optimized"
        self._instrument = instrument
        self.roundtrips = 0
        self.engine = _make_engine(settings.db_url, self)
        self._write_lock = threading.Lock()  # one writer per process; SQLite allows one anyway
        self._pending_lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._pending = _Pending()
        self._flushing = _Pending()  # taken from _pending, being written: still visible
        self._oldest_pending: float | None = None
        self._cache_lock = threading.Lock()
        self._lru: cachetools.LRUCache[Any, Any] = cachetools.LRUCache(settings.cache_max_size)
        self._index: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(
            settings.cache_max_size,
            settings.index_cache_timeout_ms / 1000,
            timer=self.clock.monotonic,
        )
        self.cache_hits = 0
        self.cache_misses = 0
        self._generation = 0  # bumped by every invalidation (see _through)
        self._closed = threading.Event()
        self._wake = threading.Event()  # the size trigger fired: the flusher writes now
        try:
            missing = _missing_columns(self.engine)
            if missing is None:
                metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StorageError("open", f"{settings.db_url}: {exc}") from exc
        if missing is not None:
            raise StorageError(
                "open",
                f"{settings.db_url} was made by an older version (table {missing}): "
                "move it away or delete it, and a new one is made",
            )
        self._flusher: threading.Thread | None = None
        if self.optimized:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="storage-flusher", daemon=True
            )
            self._flusher.start()
        atexit.register(self._close_at_exit)

    # --- generic API (used by the batch runner and the monitor) -------------------

    def write(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows and commit before returning."""
        if rows:
            with self.transaction("write") as conn:
                conn.execute(insert(table), [dict(r) for r in rows])

    def defer(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue inserts for the next flush (naive mode: write at once)."""
        if not self.optimized:
            self.write(table, rows)
            return
        with self._pending_lock:
            self._pending.inserts.extend((table, dict(r)) for r in rows)
        self._after_defer()

    @contextlib.contextmanager
    def transaction(self, operation: str = "transaction") -> Iterator[Connection]:
        """A connection inside one transaction, committed on exit (write lock held)."""
        with self._timed(f"storage.{operation}"), self._write_lock:
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(immediate=True)
                    with conn.begin():
                        yield conn
            except SQLAlchemyError as exc:
                raise StorageError(operation, _brief(exc), transient=_is_locked(exc)) from exc

    @contextlib.contextmanager
    def reading(self, operation: str = "read") -> Iterator[Connection]:
        with self._timed(f"storage.{operation}"):
            try:
                with self.engine.connect() as conn:
                    yield conn
            except SQLAlchemyError as exc:
                raise StorageError(operation, _brief(exc), transient=_is_locked(exc)) from exc

    def pending_writes(self) -> int:
        """Writes not committed yet (queued, or in a flush under way)."""
        with self._pending_lock:
            return len(self._pending) + len(self._flushing)

    def flush(self) -> int:
        """Write everything queued in one transaction; return how many writes.

        On failure the writes stay queued (newer queued values win) and the
        error is raised.
        """
        return self._write_queued("flush")

    def _write_queued(
        self, operation: str, then: Callable[[Connection], None] | None = None
    ) -> int:
        """Write everything queued, then ``then(conn)``, in one transaction (see flush)."""
        with self._flush_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, _Pending()
                self._flushing = batch  # readers overlay it until it is committed
                self._oldest_pending = None
            if not batch and then is None:
                return 0
            try:
                with self.transaction(operation) as conn:
                    batch.write(conn)
                    if then is not None:
                        then(conn)
            except StorageError:
                with self._pending_lock:
                    self._pending = batch.merged_with(self._pending)
                    self._flushing = _Pending()
                    self._oldest_pending = self.clock.monotonic()
                raise
            self._forget_flushed(batch)
            return len(batch)

    def _forget_flushed(self, batch: _Pending) -> None:
        """After a commit: values read from the database while it was under way are
        old; drop what was cached of the jobs it wrote, then stop overlaying it."""
        written = {job_id for job_id, _ in batch.entries} | set(batch.jobs)
        self._drop_cached(written, {job.run_id for job in batch.jobs.values()})
        with self._pending_lock:
            self._flushing = _Pending()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        try:
            self.flush()
        finally:
            self.engine.dispose()
            atexit.unregister(self._close_at_exit)

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except StorageError as exc:
            log.error("%s: queued writes were not saved; re-running the work rebuilds them", exc)

    def clear_cache(self) -> int:
        """Drop the storage cache (LRU and index); return the entries dropped."""
        with self._cache_lock:
            n = len(self._lru) + len(self._index)
            self._lru.clear()
            self._index.clear()
            return n

    def cache_stats(self) -> dict[str, Any]:
        with self._cache_lock:
            total = self.cache_hits + self.cache_misses
            return {
                "enableInMemoryCache": self.optimized and self.settings.enable_in_memory_cache,
                "size": len(self._lru),
                "indexSize": len(self._index),
                "cacheMaxSize": self.settings.cache_max_size,
                "hits": self.cache_hits,
                "misses": self.cache_misses,
                "hitRate": self.cache_hits / total if total else 0.0,
                "pendingWrites": self.pending_writes(),
                "roundtrips": self.roundtrips,
            }

    # --- runs and jobs ------------------------------------------------------------------

    def create_run(
        self, month: str, districts: Sequence[str], *, mode: str, source: str
    ) -> list[Job]:
        """A new run of ``month`` with one pending job per district (one transaction)."""
        now = self.clock.now()
        with self.transaction("create_run") as conn:
            result = conn.execute(
                insert(runs).values(month=month, created_at=now, mode=mode, source=source)
            )
            run_id = result.inserted_primary_key[0]  # type: ignore[index]
            rows = [_new_job_row(run_id, d, month, now) for d in districts]
            if rows:
                conn.execute(insert(jobs), rows)
        self._drop_index()
        return self.jobs(run_id=run_id)

    def latest_run(self, month: str) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            with self.reading("latest_run") as conn:
                row = conn.execute(
                    select(runs).where(runs.c.month == month).order_by(runs.c.id.desc()).limit(1)
                ).first()
            return dict(row._mapping) if row else None

        return self._indexed(("latest_run", month), load)  # type: ignore[no-any-return]

    def runs(self, month: str | None = None) -> list[dict[str, Any]]:
        query = select(runs).order_by(runs.c.id.desc())
        if month:
            query = query.where(runs.c.month == month)
        with self.reading("runs") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def jobs(
        self, *, run_id: int | None = None, month: str | None = None, status: str | None = None
    ) -> list[Job]:
        """Jobs of a run, or of the latest run of a month, optionally by status."""
        if run_id is None and month is not None:
            latest = self.latest_run(month)
            if latest is None:
                return []
            run_id = latest["id"]
        found = self._indexed(("jobs", run_id), lambda: self._load_jobs(run_id))
        with self._pending_lock:
            queued = {**self._flushing.jobs, **self._pending.jobs}
            overlaid = [queued.get(j.id, j) for j in found]
        return [j for j in overlaid if status is None or j.status == status]

    def _load_jobs(self, run_id: int | None) -> list[Job]:
        query = select(*_JOB_COLUMNS).order_by(jobs.c.id)
        if run_id is not None:
            query = query.where(jobs.c.run_id == run_id)
        with self.reading("load_jobs") as conn:
            return list(map(_job_from_row, raw_rows(conn, query)))

    def recent_jobs(self, district: str, limit: int = 12) -> list[Job]:
        """The district's latest jobs over every month and run, newest first."""
        query = select(*_JOB_COLUMNS).where(jobs.c.district == district).order_by(jobs.c.id.desc())
        with self.reading("recent_jobs") as conn:
            return list(map(_job_from_row, raw_rows(conn, query.limit(limit))))

    def get_job(self, job_id: int) -> Job:
        with self._pending_lock:
            for queued in (self._pending, self._flushing):
                if job_id in queued.jobs:
                    return queued.jobs[job_id]

        def load() -> Job:
            with self.reading("get_job") as conn:
                row = conn.execute(select(*_JOB_COLUMNS).where(jobs.c.id == job_id)).first()
            if row is None:
                raise NotFoundError("job", job_id)
            return _job_from_row(row)

        return self._cached(("job", job_id), load)  # type: ignore[no-any-return]

    def transition(self, job: Job) -> Job:
        """Commit a job's new status (and everything queued before it), then return it."""
        self._write_queued("transition", lambda conn: _update_jobs(conn, [job]))
        self._forget_job(job)
        return job

    def save_progress(
        self, job: Job, entry: TimelineEntry | None, month_end: Snapshot | None
    ) -> None:
        """Record one check: its timeline entry, the job's counters, the month-end snapshot.

        Optimized mode queues the three writes (one flush writes them together);
        naive mode commits each at once.
        """
        if not self.optimized:
            if entry is not None:
                self._write_entries([entry])
            with self.transaction("save_job") as conn:
                _update_jobs(conn, [job])
            if month_end is not None:
                with self.transaction("month_end") as conn:
                    _upsert_month_end(conn, [_month_end_row(month_end, job.id, self.clock.now())])
            return
        with self._pending_lock:
            self._pending.jobs[job.id] = job
            if entry is not None:
                self._pending.entries[(entry.job_id, entry.as_of)] = entry
            if month_end is not None:
                self._pending.put_month_end(_month_end_row(month_end, job.id, self.clock.now()))
            pending = self._note_pending()
        # Nothing cached is dropped here: reads see the queued writes on top of it,
        # and the flush that commits them drops it (_forget_flushed).
        self._size_trigger(pending)

    # --- timelines and month-end snapshots ----------------------------------------------

    def timeline(self, job_id: int) -> tuple[TimelineEntry, ...]:
        stored = self._cached(("timeline", job_id), lambda: self._load_timelines([job_id])[job_id])
        return _overlay(stored, self._queued_entries().get(job_id))

    def timelines(self, job_ids: Sequence[int]) -> dict[int, tuple[TimelineEntry, ...]]:
        """Timelines of many jobs in one query per 500 jobs (the bulk load)."""
        stored = self._load_timelines(job_ids)
        queued = self._queued_entries()
        if not queued:
            return stored
        return {j: _overlay(entries, queued.get(j)) for j, entries in stored.items()}

    def _load_timelines(self, job_ids: Sequence[int]) -> dict[int, tuple[TimelineEntry, ...]]:
        """Stored timelines. Rows come in (job_id, as_of) order, the order of the unique
        index, so that SQLite reads them off the index without sorting and they group
        by job."""
        out: dict[int, tuple[TimelineEntry, ...]] = dict.fromkeys(job_ids, ())
        with self.reading("timelines") as conn:  # one transaction: one snapshot
            for chunk in _chunks(list(job_ids), 500):
                query = (
                    select(*_ENTRY_COLUMNS)
                    .where(timeline.c.job_id.in_(chunk))
                    .order_by(timeline.c.job_id, timeline.c.as_of)
                )
                # Streamed, a batch of rows at a time; a job's rows may span two.
                for entries in map(_entries_from_columns, raw_columns(conn, query)):
                    for job_id, group in itertools.groupby(entries, _JOB_ID):
                        out[job_id] += tuple(group)
        return out

    def last_entry(self, job_id: int, month: str) -> TimelineEntry | None:
        """The job's latest entry with data of ``month`` (or of no stated month)."""
        if self.optimized:
            entries = [e for e in self.timeline(job_id) if e.data_month in (month, None)]
            return entries[-1] if entries else None
        query = (
            select(*_ENTRY_COLUMNS)
            .where(timeline.c.job_id == job_id)
            .where((timeline.c.data_month == month) | timeline.c.data_month.is_(None))
            .order_by(timeline.c.as_of.desc())
            .limit(1)
        )
        with self.reading("last_entry") as conn:
            row = conn.execute(query).first()
        return _entries_from_columns(list(zip(row)))[0] if row else None

    def month_end_snapshots(self, month: str) -> dict[str, Snapshot]:
        self.flush()
        query = select(month_end_snapshots).where(month_end_snapshots.c.month == month)
        with self.reading("month_end") as conn:
            return {
                r.district: Snapshot(
                    r.district, r.as_of, r.month, json.loads(r.metrics), "month-end"
                )
                for r in conn.execute(query)
            }

    def _write_entries(self, entries: Sequence[TimelineEntry]) -> None:
        with self.transaction("write_entry") as conn:
            _upsert_entries(conn, entries)

    def _queued_entries(self) -> dict[int, list[TimelineEntry]]:
        """Entries not committed yet (queued or being flushed), by job."""
        by_job: dict[int, list[TimelineEntry]] = {}
        with self._pending_lock:
            if not self._pending.entries and not self._flushing.entries:
                return by_job
            entries = {**self._flushing.entries, **self._pending.entries}  # newer wins
        for (job_id, _), e in entries.items():
            by_job.setdefault(job_id, []).append(e)
        return by_job

    # --- caches -----------------------------------------------------------------------------

    def _cache_on(self) -> bool:
        return self.optimized and self.settings.enable_in_memory_cache

    def _cached(self, key: tuple[str, int], load: Any) -> Any:
        """Read ``(kind, job id)`` through the LRU (see _drop_cached)."""
        return self._through(self._lru, key, load, count=True)

    def _indexed(self, key: Any, load: Any) -> Any:
        return self._through(self._index, key, load, count=False)

    def _through(self, cache: Any, key: Any, load: Any, *, count: bool) -> Any:
        """Read ``key`` through ``cache``; a value loaded while a write invalidated
        entries may be stale, so it is returned but not kept."""
        if not self._cache_on():
            return load()
        with self._cache_lock:
            if key in cache:
                self.cache_hits += count
                return cache[key]
            self.cache_misses += count
            generation = self._generation
        value = load()
        with self._cache_lock:
            if generation == self._generation:
                cache[key] = value
        return value

    def _drop_index(self) -> None:
        with self._cache_lock:
            self._generation += 1
            self._index.clear()

    def _forget_job(self, job: Job) -> None:
        self._drop_cached({job.id}, {job.run_id})  # a new status alters the run's listing
        with self._pending_lock:
            self._pending.jobs.pop(job.id, None)

    def _drop_cached(self, job_ids: set[int], run_ids: set[int]) -> None:
        """Drop the cached job and timeline of ``job_ids`` and the job listings of
        ``run_ids``; loads under way are not kept (see _through)."""
        with self._cache_lock:
            self._generation += 1
            if len(self._lru) < 2 * len(job_ids):  # the cache is the shorter list to go over
                stale = [key for key in self._lru if key[1] in job_ids]
            else:
                stale = [(kind, j) for j in job_ids for kind in ("job", "timeline")]
            for key in stale:
                self._lru.pop(key, None)
            for run_id in run_ids:
                self._index.pop(("jobs", run_id), None)

    # --- deferred-write machinery ---------------------------------------------------------

    def _after_defer(self) -> None:
        with self._pending_lock:
            pending = self._note_pending()
        self._size_trigger(pending)

    def _note_pending(self) -> int:
        """Start the maximum-delay clock; how many writes are queued (pending lock held)."""
        if self._oldest_pending is None:
            self._oldest_pending = self.clock.monotonic()
        return len(self._pending)

    def _size_trigger(self, pending: int) -> None:
        """At ``batch_size`` queued writes the flusher thread writes them, so that the
        caller does not wait for the commit. Past :data:`_INLINE_FLUSH_FACTOR` times that
        (the flusher is behind, or the database fails), the caller flushes itself: it
        waits, and it gets the error. The margin lets a writer that keeps the interpreter
        busy go on queueing while the flusher's SQLite work, which releases the
        interpreter lock, runs beside it: a writing loop got to four times the batch size
        before the flusher started, and at four times it waited for every flush."""
        if pending >= _INLINE_FLUSH_FACTOR * self.settings.batch_size:
            self.flush()
        elif pending >= self.settings.batch_size and not self._wake.is_set():
            self._wake.set()  # (set() alone costs a lock and a notify at every write)

    def _flush_loop(self) -> None:
        delay = self.settings.max_write_delay_ms / 1000
        while not self._closed.is_set():
            self._wake.wait(min(delay, 0.05))
            self._wake.clear()  # a trigger after this is seen by the size check below
            with self._pending_lock:
                oldest, pending = self._oldest_pending, len(self._pending)
            late = oldest is not None and self.clock.monotonic() - oldest >= delay
            if not self._closed.is_set() and (late or pending >= self.settings.batch_size):
                with contextlib.suppress(StorageError):  # kept queued; retried next tick
                    self.flush()

    def _timed(self, operation: str) -> contextlib.AbstractContextManager[object]:
        return self._instrument.timed(operation, mode=self.settings.mode)


class _Pending:
    """Writes waiting for a flush, coalesced by key (the newest value wins)."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.entries: dict[tuple[int, date], TimelineEntry] = {}
        self.month_ends: dict[tuple[str, str], dict[str, Any]] = {}
        self.inserts: list[tuple[Table, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self.jobs) + len(self.entries) + len(self.month_ends) + len(self.inserts)

    def put_month_end(self, row: dict[str, Any]) -> None:
        key = (row["district"], row["month"])
        old = self.month_ends.get(key)
        if old is None or row["as_of"] > old["as_of"]:
            self.month_ends[key] = row

    def write(self, conn: Connection) -> None:
        if self.entries:
            _upsert_entries(conn, self.entries.values())
        if self.jobs:
            _update_jobs(conn, list(self.jobs.values()))
        if self.month_ends:
            _upsert_month_end(conn, list(self.month_ends.values()))
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for table, row in self.inserts:
            by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            conn.execute(insert(table), rows)

    def merged_with(self, newer: _Pending) -> _Pending:
        """This (failed) batch with ``newer`` writes on top."""
        self.jobs.update(newer.jobs)
        self.entries.update(newer.entries)
        for row in newer.month_ends.values():
            self.put_month_end(row)
        self.inserts.extend(newer.inserts)
        return self


# --- rows <-> values ---------------------------------------------------------------------------


def _new_job_row(run_id: int, district: str, month: str, now: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "district": district,
        "month": month,
        "status": JobStatus.PENDING.value,
        "created_at": now,
        "checks": 0,
        "significant_changes": 0,
        "stable_days": 0,
        "extension_days": 0,
        "attempts": 0,
        "significant_dates": "",
    }


def _job_progress_row(job: Job) -> tuple[Any, ...]:
    """A job's progress columns in :data:`_JOB_PROGRESS_COLUMNS` order, then its id."""
    return (
        job.status.value,
        job.phase.value if job.phase else None,
        job.reason.value if job.reason else None,
        job.error,
        job.completed_at,
        job.final_as_of,
        job.last_check_date,
        job.checks,
        job.significant_changes,
        job.stable_days,
        job.extension_days,
        job.last_significant_as_of,
        job.attempts,
        ",".join(map(date.isoformat, job.significant_dates)),
        job.id,
    )


# Enum members by value: a dict lookup instead of the enum's call machinery.
_STATUSES = {s.value: s for s in JobStatus}
_PHASES = {p.value: p for p in Phase}
_REASONS = {r.value: r for r in Reason}


# Jobs are read by position, in the order of Job's fields (a KeyError here if the
# model and the table drift apart).
_JOB_COLUMNS = tuple(jobs.c[f.name] for f in dataclasses.fields(Job))


def _job_from_row(r: Sequence[Any]) -> Job:
    """A job from its row (its timestamps are aware UTC: see ``UTCDateTime``)."""
    (id_, run_id, district, month, status, phase, reason, error, created_at, completed_at,
     final_as_of, last_check_date, checks, significant_changes, stable_days, extension_days,
     last_significant_as_of, attempts, dates) = r  # fmt: skip
    return Job.from_stored(
        id_,
        run_id,
        district,
        month,
        _STATUSES[status],
        _PHASES.get(phase),
        _REASONS.get(reason),
        error,
        created_at,
        completed_at,
        final_as_of,
        last_check_date,
        checks,
        significant_changes,
        stable_days,
        extension_days,
        last_significant_as_of,
        attempts,
        tuple(map(date.fromisoformat, dates.split(","))) if dates else (),
    )


_ENTRY_NAMES = (
    "job_id",
    "as_of",
    "checked_at",
    "data_month",
    "metrics",
    "changes",
    "significant",
    "note",
)
# Entries are read by position (cheaper than by name: timelines are read in bulk).
_ENTRY_COLUMNS = tuple(timeline.c[name] for name in _ENTRY_NAMES)


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=True)`` without its per-call set-up: every call
    builds a new C encoder, which costs more than encoding a small dict does."""
    plain = json.JSONEncoder(sort_keys=True, check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (not CPython)
        return plain.encode
    # (markers, default, encode_str, indent, key_sep, item_sep, sort_keys, skipkeys,
    # allow_nan): the arguments JSONEncoder.iterencode passes for these settings.
    chunks = make(
        None, plain.default, json.encoder.encode_basestring_ascii, None, ": ", ", ",
        True, False, True,
    )  # fmt: skip
    return lambda value: "".join(chunks(value, 0))


_to_json = _json_encoder()
# json.loads also skips whitespace around the value (there is none in what we wrote).
_from_json = json.JSONDecoder().raw_decode


def _entry_row(e: TimelineEntry) -> tuple[Any, ...]:
    """An entry's columns in :data:`_ENTRY_NAMES` order."""
    return (
        e.job_id,
        e.as_of,
        e.checked_at,
        e.data_month,
        _to_json(_plain(e.metrics)),
        _to_json([[c.metric, c.old, c.new, c.significant] for c in e.changes])
        if e.changes
        else "[]",
        e.significant,
        e.note,
    )


def _plain(metrics: Mapping[str, float]) -> dict[str, float]:
    """A dict copy of a model's metrics for the JSON encoder. They are a read-only view
    of a dict, whose ``copy()`` copies the dict in C: a sixth of ``dict(view)``, which
    goes key by key through the mapping protocol."""
    return metrics.copy() if isinstance(metrics, MappingProxyType) else dict(metrics)


def _entries_from_columns(columns: Sequence[Iterable[Any]]) -> list[TimelineEntry]:
    """Entries from their rows' columns (in :data:`_ENTRY_NAMES` order). Their metrics
    are decoded in one call: for a small dict, a decode's own set-up costs more than
    the dict."""
    job_ids, as_ofs, checked_ats, data_months, metrics, changes, significants, notes = columns
    ids, texts = list(job_ids), list(metrics)
    decoded = _from_json(f"[{', '.join(texts)}]")[0]
    if len(decoded) != len(texts):
        where = f"job {ids[0]}" if ids[0] == ids[-1] else f"jobs {ids[0]} to {ids[-1]}"
        raise StorageError("read", f"timeline metrics of {where} are not JSON objects")
    return list(
        map(
            TimelineEntry.from_stored,
            ids,
            as_ofs,
            checked_ats,
            data_months,
            decoded,
            map(_stored_changes, changes),
            significants,
            notes,
        )
    )


_JOB_ID = operator.attrgetter("job_id")


def _stored_changes(text: str) -> tuple[MetricChange, ...]:
    return () if text == "[]" else _changes(text)  # most entries: no change


def _changes(text: str) -> tuple[MetricChange, ...]:
    return tuple(MetricChange(m, o, n, s) for m, o, n, s in _from_json(text)[0])


def _month_end_row(s: Snapshot, job_id: int, now: datetime) -> dict[str, Any]:
    return {
        "district": s.district,
        "month": s.data_month,
        "as_of": s.as_of,
        "metrics": _to_json(_plain(s.metrics)),
        "job_id": job_id,
        "updated_at": now,
    }


def _update_jobs(conn: Connection, changed: Sequence[Job]) -> None:
    """Write jobs' progress columns in one executemany."""
    _UPDATE_JOBS.execute(conn, map(_job_progress_row, changed))


def _upsert_entries(conn: Connection, entries: Iterable[TimelineEntry]) -> None:
    _UPSERT_ENTRIES.execute(conn, map(_entry_row, entries))


def _upsert_month_end(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Replace a month-end snapshot only with strictly newer data of the same month."""
    conn.execute(_month_end_upsert(conn.dialect.name), rows)


def _entries_upsert(dialect: str) -> Any:
    stmt = dialect_insert(dialect, timeline).values({n: bindparam(n) for n in _ENTRY_NAMES})
    cols = ("checked_at", "data_month", "metrics", "changes", "significant", "note")
    return stmt.on_conflict_do_update(
        index_elements=["job_id", "as_of"], set_={c: stmt.excluded[c] for c in cols}
    )


_UPSERT_ENTRIES = Prepared(_entries_upsert, _ENTRY_NAMES)
_UPDATE_JOBS = Prepared(
    lambda _: (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"))
        .values({c: bindparam(c) for c in _JOB_PROGRESS_COLUMNS})
    ),
    (*_JOB_PROGRESS_COLUMNS, "job_id"),
)


# Built once per dialect: building an upsert (its ``excluded`` alias) costs more than
# running it, and it runs at every flush.
@functools.cache
def _month_end_upsert(dialect: str) -> Any:
    stmt = dialect_insert(dialect, month_end_snapshots)
    cols = ("as_of", "metrics", "job_id", "updated_at")
    return stmt.on_conflict_do_update(
        index_elements=["district", "month"],
        set_={c: stmt.excluded[c] for c in cols},
        where=stmt.excluded.as_of > month_end_snapshots.c.as_of,
    )


# --- engine set-up ------------------------------------------------------------------------------


def _make_engine(url: str, storage: Storage) -> Engine:
    parsed = parse_url(url)
    try:
        engine = create_engine(url, connect_args=_connect_args(parsed.get_backend_name()))
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError("open", f"cannot use database URL {url!r}: {exc}") from exc

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        storage.roundtrips += 1  # approximate under threads; a statistic, not an invariant

    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    return engine


def _connect_args(backend: str) -> dict[str, Any]:
    return {"timeout": 30, "check_same_thread": False} if backend == "sqlite" else {}


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        # WAL: readers never block the writer. FULL: a commit reaches the disk before it
        # returns, so "committed before reported" holds through a power loss too.
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "busy_timeout=30000",
        ):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front so concurrent writers wait (busy_timeout)
        # instead of failing when a read transaction tries to upgrade.
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _missing_columns(engine: Engine) -> str | None:
    """The first ``table.column`` an existing table lacks (create_all adds missing
    tables, never columns)."""
    found = inspect(engine)
    for table in metadata.sorted_tables:
        if not found.has_table(table.name):
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                return f"{table.name} has no column {column.name}"
    return None


def _brief(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _is_locked(exc: SQLAlchemyError) -> bool:
    return "locked" in _brief(exc).lower() or "busy" in _brief(exc).lower()


def _overlay(
    stored: tuple[TimelineEntry, ...], queued: list[TimelineEntry] | None
) -> tuple[TimelineEntry, ...]:
    """A stored timeline with queued entries on top (the newer entry of an as-of wins)."""
    if not queued:
        return stored
    merged = {e.as_of: e for e in stored}
    merged.update({e.as_of: e for e in queued})
    return tuple(merged[k] for k in sorted(merged))


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


__all__ = ["Storage"]
