"""The composition root: one settings object in, every engine part out.

The CLI, the dashboard and the API all build their engine here, so they watch
the same storage, cache, monitor and batch runner that do the work.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from engine.app.freshness import Freshness
from engine.app.months import MONTH_END_BATCH, month_batch
from engine.app.tasks import TaskRegistry
from engine.batch.runner import BatchRunner, SubmitResult
from engine.cache import CacheService
from engine.cancel import CancelToken
from engine.clock import Clock, SystemClock
from engine.domain.models import Job, TimelineEntry, month_end, validate_district, validate_month
from engine.errors import ConfigError, ConflictError, EngineError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.monitor.core import Monitor
from engine.monitor.recorder import Recorder
from engine.reconcile import MonthProgress, Reconciler
from engine.settings import Settings, StorageSettings
from engine.sources.base import Source
from engine.sources.factory import make_source
from engine.store.batches import SqlBatchStore
from engine.store.cached import CachedJobStore, ReadCache
from engine.store.changes import ChangeFeed, Changes
from engine.store.database import Database
from engine.store.jobs import JobStore, SqlJobStore
from engine.store.perf import SqlPerfStore
from engine.store.storage import Storage
from engine.store.writes import Deferred, Immediate, WritePolicy


def open_storage(
    settings: StorageSettings, *, clock: Clock | None = None, instrument: Instrument = NO_INSTRUMENT
) -> Storage:
    """The store for ``settings``: the one place that turns the storage mode into parts.

    ``naive`` (the "before"): every write commits at once, every read queries.
    ``optimized``: deferred, batched writes and a job store behind in-memory caches.
    """
    clock = clock or SystemClock()
    database = Database(settings.db_url, instrument=instrument, labels={"mode": settings.mode})
    optimized = settings.mode == "optimized"
    cache = ReadCache(
        enabled=optimized and settings.enable_in_memory_cache,
        max_size=settings.cache_max_size,
        index_timeout_ms=settings.index_cache_timeout_ms,
        clock=clock,
    )
    writes: WritePolicy = Immediate(database)
    if optimized:
        writes = Deferred(
            database,
            batch_size=settings.batch_size,
            max_delay_ms=settings.max_write_delay_ms,
            clock=clock,
        )
    sql = SqlJobStore(database, writes, clock=clock)
    jobs: JobStore = CachedJobStore(sql, writes, cache) if optimized else sql
    return Storage(database=database, writes=writes, jobs=jobs, cache=cache)


class Console:
    """Builds and owns the engine's parts. Thread-safe; share one per process."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, source: Source | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.recorder = Recorder(clock=self.clock)
        self.storage = open_storage(settings.storage, clock=self.clock, instrument=self.recorder)
        self.monitor = Monitor(
            settings.monitor,
            clock=self.clock,
            store=SqlPerfStore(self.storage),
            recorder=self.recorder,
        )
        self.cache = CacheService(settings.cache, clock=self.clock, instrument=self.recorder)
        self.cache.set_prefetcher(self._prefetch)
        optimized = settings.storage.mode == "optimized"
        self.source = source or make_source(
            settings.source, share_summary=optimized, instrument=self.recorder
        )
        self.reconciler = Reconciler(
            storage=self.storage,
            source=self.source,
            settings=settings.recon,
            clock=self.clock,
            instrument=self.recorder,
            on_write=self._invalidate,
            keep_last_entry=optimized,
        )
        self.batch = BatchRunner(
            settings.batch,
            store=SqlBatchStore(self.storage),
            execute=self._execute,
            should_skip=self._should_skip,
            clock=self.clock,
            instrument=self.recorder,
        )
        self.batch.listen(self._on_batch_event)
        self.tasks = TaskRegistry(clock=self.clock)  # long UI-started work, e.g. before/after
        feed = ChangeFeed(self.storage.database, clock=self.clock)  # before any read: none missed
        self.freshness = Freshness(feed=feed, on_change=self._forget_elsewhere)
        self._register_gauges()
        self._closed = threading.Event()
        self._start_lock = threading.Lock()

    # --- month-end runs ------------------------------------------------------------------

    def start_batch(
        self,
        month: str,
        *,
        districts: Sequence[str] | None = None,
        priority: int = 0,
        config: Mapping[str, Any] | None = None,
    ) -> SubmitResult:
        """Start (or resume) ``month`` for ``districts`` as one batch of district replays.

        A month that a batch of this process is still working is refused
        (ConflictError): two replays of one job must never run at once.
        """
        month = validate_month(month)
        chosen = [validate_district(d) for d in districts] if districts else self.districts(month)
        if not chosen:
            raise ConfigError("districts", districts, "no districts to reconcile")
        with self._start_lock:
            busy = month_batch(self, month)
            if busy is not None:
                raise ConflictError(
                    "month", month, f"batch {busy} is still working it: wait or cancel it first"
                )
            return self._submit_month(month, chosen, priority, config)

    def _submit_month(
        self, month: str, chosen: list[str], priority: int, config: Mapping[str, Any] | None
    ) -> SubmitResult:
        jobs = self.reconciler.start_month(month, chosen, mode=self.settings.storage.mode)
        self._invalidate_month(month)
        items = [
            (
                {"kind": "reconcile", "job_id": j.id, "district": j.district, "month": month},
                priority,
            )
            for j in jobs
            if not j.status.finished
        ]
        config = dict(config or {})
        if self.settings.storage.mode == "naive":
            config["maxConcurrentJobs"] = 1  # the "before": sequential
        return self.batch.submit(items, config=config, name=MONTH_END_BATCH.format(month=month))

    def districts(self, month: str) -> list[str]:
        """Every district the source publishes for ``month``."""
        return self.source.districts(month, month_end(month) + timedelta(days=1))

    def _execute(self, spec: Mapping[str, Any], token: CancelToken) -> Any:
        if spec.get("kind") != "reconcile":
            raise ConfigError("kind", spec.get("kind"), "unknown batch item kind")
        job = self.reconciler.replay(int(spec["job_id"]), token)
        return {"status": job.status.value, "reason": job.reason.value if job.reason else None}

    def _should_skip(self, spec: Mapping[str, Any]) -> bool:
        return self.storage.get_job(int(spec["job_id"])).status.finished

    def _on_batch_event(self, event: Mapping[str, Any]) -> None:
        # A job fails only when the runner has given up on its item (retries exhausted).
        if event.get("type") == "failed" and "job_id" in event.get("spec", {}):
            self.reconciler.fail(int(event["spec"]["job_id"]), str(event.get("error", "")))
        if event.get("type") == "cancelled" and "job_id" in event.get("spec", {}):
            self.reconciler.cancel(int(event["spec"]["job_id"]))

    # --- reads (through the cache) -----------------------------------------------------------

    def job(self, job_id: int) -> Job:
        return self.cache.get_or_load(  # type: ignore[no-any-return]
            "jobs", job_id, lambda: self.storage.get_job(job_id), tags=(("job", job_id),)
        )

    def timeline(self, job_id: int) -> tuple[TimelineEntry, ...]:
        return self.cache.get_or_load(  # type: ignore[no-any-return]
            "timelines", job_id, lambda: self.storage.timeline(job_id), tags=(("job", job_id),)
        )

    def jobs(self, month: str, status: str | None = None) -> tuple[Job, ...]:
        found = self.cache.get_or_load(
            "status",
            ("jobs", month),
            lambda: tuple(self.storage.jobs(month=month)),
            tags=(("month", month),),
        )
        return tuple(j for j in found if status is None or j.status == status)

    def month_progress(self, month: str) -> MonthProgress:
        return self.cache.get_or_load(  # type: ignore[no-any-return]
            "status",
            ("progress", month),
            lambda: self.reconciler.month_progress(month),
            tags=(("month", month),),
        )

    def status_rows(self, month: str) -> list[dict[str, Any]]:
        """One row per district of the month's latest run (the ``recon status`` table)."""
        return [
            {
                "district": j.district,
                "status": j.status.value,
                "phase": j.phase.value if j.phase else None,
                "reason": j.reason.value if j.reason else None,
                "final_as_of": j.final_as_of.isoformat() if j.final_as_of else None,
                "checks": j.checks,
                "significant_changes": j.significant_changes,
            }
            for j in self.jobs(month)
        ]

    def month_end(self, month: str) -> dict[str, Any]:
        return self.cache.get_or_load(  # type: ignore[no-any-return]
            "snapshots",
            month,
            lambda: self.storage.month_end_snapshots(month),
            tags=(("month", month),),
        )

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a job and stop the batch item working it."""
        if self.job(job_id).status.finished:
            raise ConflictError("job", job_id, "already finished")
        self.batch.cancel_matching(lambda spec: spec.get("job_id") == job_id)
        job = self.reconciler.cancel(job_id)
        self._invalidate(job)
        return job

    def settings_dict(self) -> dict[str, Any]:
        return asdict(self.settings)

    # --- wiring ----------------------------------------------------------------------------------

    def _invalidate(self, job: Job) -> None:
        self.cache.invalidate_job(job.id)
        self._invalidate_month(job.month)

    def _invalidate_month(self, month: str) -> None:
        self.cache.invalidate("status", ("jobs", month))
        self.cache.invalidate("status", ("progress", month))
        self.cache.invalidate("snapshots", month)

    def _forget_elsewhere(self, changes: Changes) -> None:
        """Another process committed ``changes``: drop what is cached of them. The
        storage cache goes first, so that a load the console's invalidation discards
        is the only one that could have read its old values."""
        if changes.everything:
            self.storage.clear_cache()
            for layer in ("jobs", "timelines", "status", "snapshots"):
                self.cache.clear(layer)
            return
        self.storage.forget(set(changes.job_ids), set(changes.months))
        for job_id in changes.job_ids:
            self.cache.invalidate_job(job_id)
        for month in changes.months:
            self._invalidate_month(month)

    def _prefetch(self, job_id: int) -> None:
        """A job read often: load its timeline and its district's other recent jobs."""
        job = self.storage.get_job(job_id)
        timeline = self.storage.timeline(job_id)
        self.cache.set("timelines", job_id, timeline, tags=(("job", job_id),), prefetched=True)
        for other in self.storage.recent_jobs(job.district):
            if other.id != job_id:
                self.cache.set("jobs", other.id, other, tags=(("job", other.id),), prefetched=True)

    def _register_gauges(self) -> None:
        self.monitor.register_gauge(
            "cache_hit_rate", lambda: self.cache.stats()["total"]["hit_rate"]
        )
        self.monitor.register_gauge(
            "storage_pending_writes", lambda: float(self.storage.pending_writes())
        )
        self.monitor.register_gauge("batch_queue_depth", lambda: float(self.batch.queue_depth()))
        self.monitor.register_gauge("batch_running", lambda: float(self.batch.running_count()))

    def start_background(self) -> None:
        """Start the background threads a long-lived process wants (dashboard, API):
        among them the one that keeps its caches fresh with other processes' commits."""
        self.freshness.start()
        self.cache.start()
        self.monitor.start()
        self.batch.start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        failures: list[EngineError] = []
        self.freshness.close()
        for part in (self.batch, self.cache, self.monitor, self.source, self.storage):
            try:
                part.close()
            except EngineError as exc:  # close the rest; report the first failure
                failures.append(exc)
        if failures:
            raise failures[0]


__all__ = ["Console", "open_storage"]
