"""In-memory caches in front of a :class:`~engine.store.jobs.SqlJobStore` (optimized mode).

:class:`ReadCache` holds jobs and timelines in an LRU of ``max_size`` entries
and index queries (the jobs of a run, the latest run of a month) in a TTL cache
of ``index_timeout_ms``. :class:`CachedJobStore` reads the stored part of a
value through it and lays the write policy's queued writes on top, as the
store it wraps does. Entries are dropped when a write changes them: a new run,
a transition, and every flush (for the jobs it wrote); and when another process
commits (:meth:`ReadCache.forget`, from the console's freshness watcher).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import cachetools

from engine.clock import Clock, SystemClock
from engine.domain.models import Job, Snapshot, TimelineEntry
from engine.readtrace import ReadTrace
from engine.store.jobs import ENTRIES, JOBS, Run, SqlJobStore
from engine.store.rows import QueuedEntry
from engine.store.writes import Queue, WritePolicy

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CacheFigures:
    """The storage cache's figures (the API shows them in camelCase)."""

    enable_in_memory_cache: bool
    size: int
    index_size: int
    cache_max_size: int
    hits: int
    misses: int
    hit_rate: float


class ReadCache:
    """An LRU for values by key and a TTL cache for index queries. Thread-safe.

    Args:
        enabled: off, every read loads (the figures still show the settings).
        max_size: entries of each cache.
        index_timeout_ms: how long an index query's answer is kept.
        clock: the TTL's timer (``monotonic``).
    """

    def __init__(
        self,
        *,
        enabled: bool,
        max_size: int,
        index_timeout_ms: int,
        clock: Clock | None = None,
    ) -> None:
        self.enabled = enabled
        self.max_size = max_size
        self._lock = threading.Lock()
        self.trace = ReadTrace(timer=(clock or SystemClock()).monotonic)  # the LRU's reads
        self._lru: cachetools.LRUCache[Hashable, Any] = cachetools.LRUCache(max_size)
        self._index: cachetools.TTLCache[Hashable, Any] = cachetools.TTLCache(
            max_size, index_timeout_ms / 1000, timer=(clock or SystemClock()).monotonic
        )
        self._hits = 0
        self._misses = 0
        self._generation = 0  # bumped by every invalidation (see _through)

    def cached(self, key: tuple[str, int], load: Callable[[], T]) -> T:
        """Read ``(kind, job id)`` through the LRU (see :meth:`drop`); traced even when
        the cache is off, so that the what-if tuner can tell what it would do."""
        self.trace.read(key)
        return self._through(self._lru, key, load, count=True)

    def indexed(self, key: Hashable, load: Callable[[], T]) -> T:
        return self._through(self._index, key, load, count=False)

    def _through(
        self, cache: cachetools.Cache[Hashable, Any], key: Hashable, load: Callable[[], T], *,
        count: bool,
    ) -> T:  # fmt: skip
        """Read ``key`` through ``cache``; a value loaded while a write invalidated
        entries may be stale, so it is returned but not kept."""
        if not self.enabled:
            return load()
        with self._lock:
            if key in cache:
                self._hits += count
                found: T = cache[key]
                return found
            self._misses += count
            generation = self._generation
        value = load()
        with self._lock:
            if generation == self._generation:
                cache[key] = value
        return value

    def drop_index(self) -> None:
        with self._lock:
            self._generation += 1
            self._index.clear()

    def drop(self, job_ids: set[int], run_ids: set[int]) -> None:
        """Drop the cached job and timeline of ``job_ids`` and the job listings of
        ``run_ids``; loads under way are not kept (see _through)."""
        with self._lock:
            self._generation += 1
            if len(self._lru) < 2 * len(job_ids):  # the cache is the shorter list to go over
                stale = [key for key in self._lru if key[1] in job_ids]  # type: ignore[index]
            else:
                stale = [(kind, j) for j in job_ids for kind in ("job", "timeline")]
            for key in stale:
                self._lru.pop(key, None)
            for job_id in job_ids:
                self.trace.add("i", ("job", job_id))
                self.trace.add("i", ("timeline", job_id))
            for run_id in run_ids:
                self._index.pop(("jobs", run_id), None)

    def forget(self, job_ids: set[int], months: set[str]) -> None:
        """Drop what another process changed: the jobs and timelines of ``job_ids``,
        and the latest run and job listings of ``months`` (see engine.store.changes)."""
        with self._lock:
            runs = {
                key[1]  # type: ignore[index]
                for key in list(self._index)
                if key[0] == "jobs" and _of_months(self._index.get(key), months)  # type: ignore[index]
            }
            for month in months:
                self._index.pop(("latest_run", month), None)
        self.drop(job_ids, runs)

    def clear(self) -> int:
        """Drop every entry; return how many were dropped."""
        with self._lock:
            n = len(self._lru) + len(self._index)
            self.trace.add("c", None)
            self._lru.clear()
            self._index.clear()
            return n

    def figures(self) -> CacheFigures:
        with self._lock:
            total = self._hits + self._misses
            return CacheFigures(
                enable_in_memory_cache=self.enabled,
                size=len(self._lru),
                index_size=len(self._index),
                cache_max_size=self.max_size,
                hits=self._hits,
                misses=self._misses,
                hit_rate=self._hits / total if total else 0.0,
            )


def _of_months(listing: list[Job] | None, months: set[str]) -> bool:
    """Whether a cached job listing (of one run, or of every run) may list ``months``."""
    return not listing or listing[0].month in months or listing[-1].month != listing[0].month


class CachedJobStore:
    """A :class:`~engine.store.jobs.JobStore` that reads through a :class:`ReadCache`.

    Args:
        inner: the store in the database.
        writes: its write policy (a flush drops the jobs it wrote from the cache).
        cache: the caches.
    """

    def __init__(self, inner: SqlJobStore, writes: WritePolicy, cache: ReadCache) -> None:
        self._inner = inner
        self._cache = cache
        # Nothing cached is dropped by a check's writes: reads see the queued writes on
        # top of it, and the flush that commits them drops it (_forget_flushed). So the
        # hot per-check write is the inner store's own, called straight.
        self.save_progress = inner.save_progress
        writes.listen(self._forget_flushed)

    # --- runs and jobs ------------------------------------------------------------------------

    def create_run(
        self, month: str, districts: Sequence[str], *, mode: str, source: str
    ) -> list[Job]:
        created = self._inner.create_run(month, districts, mode=mode, source=source)
        self._cache.drop_index()
        return created

    def add_jobs(self, run_id: int, month: str, districts: Sequence[str]) -> list[Job]:
        self._inner.add_jobs(run_id, month, districts)
        self._cache.drop_index()
        return self.jobs(run_id=run_id)

    def latest_run(self, month: str) -> Run | None:
        return self._cache.indexed(("latest_run", month), lambda: self._inner.latest_run(month))

    def runs(self, month: str | None = None) -> list[Run]:
        return self._inner.runs(month)

    def jobs(
        self, *, run_id: int | None = None, month: str | None = None, status: str | None = None
    ) -> list[Job]:
        return self._inner.jobs_through(
            self.latest_run, self._stored_jobs, run_id=run_id, month=month, status=status
        )

    def _stored_jobs(self, run_id: int | None) -> list[Job]:
        return self._cache.indexed(("jobs", run_id), lambda: self._inner.stored_jobs(run_id))

    def recent_jobs(self, district: str, limit: int = 12) -> list[Job]:
        return self._inner.recent_jobs(district, limit)

    def get_job(self, job_id: int) -> Job:
        queued = self._inner.queued_job(job_id)
        if queued is not None:
            return queued
        return self._cache.cached(("job", job_id), lambda: self._inner.stored_job(job_id))

    def transition(self, job: Job) -> Job:
        self._inner.transition(job)
        self._cache.drop({job.id}, {job.run_id})  # a new status alters the run's listing
        return job

    # --- timelines and month-end snapshots ----------------------------------------------

    def timeline(self, job_id: int) -> tuple[TimelineEntry, ...]:
        stored = self._cache.cached(
            ("timeline", job_id), lambda: self._inner.stored_timelines([job_id])[job_id]
        )
        return self._inner.queued_timeline(job_id, stored)

    def timelines(self, job_ids: Sequence[int]) -> dict[int, tuple[TimelineEntry, ...]]:
        return self._inner.timelines(job_ids)

    def last_entry(
        self, job_id: int, month: str, before: date | None = None
    ) -> TimelineEntry | None:
        """The inner store's: cached entries do not say when their check collected them.
        One indexed query, read once per replay where the timeline is not cached yet."""
        return self._inner.last_entry(job_id, month, before)

    def timeline_warnings(self, job_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        return self._inner.timeline_warnings(job_ids)

    def month_end_snapshots(self, month: str) -> dict[str, Snapshot]:
        return self._inner.month_end_snapshots(month)

    def _forget_flushed(self, written: Queue) -> None:
        """After a commit: values read from the database while it was under way are
        old; drop what was cached of the jobs it wrote."""
        jobs: dict[int, Job] = written.values(JOBS)  # type: ignore[assignment]
        entries: dict[tuple[int, object], QueuedEntry] = written.values(ENTRIES)  # type: ignore[assignment]
        job_ids = {job_id for job_id, _ in entries} | set(jobs)
        self._cache.drop(job_ids, {job.run_id for job in jobs.values()})


__all__ = ["CacheFigures", "CachedJobStore", "ReadCache"]
