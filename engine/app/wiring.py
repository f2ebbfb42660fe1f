"""How the console's parts are connected: callbacks and gauges it hands to them.

Each function takes the parts it joins, so :class:`engine.app.console.Console`
stays the list of what is built and this module what is plugged into what.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.app.freshness import POLL_INTERVAL_S, Freshness
from engine.app.month_lease import MonthLeases
from engine.batch.distributed import AnyRunner, DistributedRunner
from engine.batch.records import Spec
from engine.batch.runner import BatchRunner
from engine.batch.worker import Execute
from engine.cache import CacheService, Prefetch
from engine.clock import Clock
from engine.domain.models import ItemState, JobStatus
from engine.errors import NotFoundError
from engine.instrument import Instrument, reads_for
from engine.monitor.core import Monitor
from engine.settings import Settings, StorageSettings
from engine.store.batches import SqlBatchStore
from engine.store.changes import ChangeFeed, Changes, waker
from engine.store.leases import SqlLeases
from engine.store.storage import Storage

__all__ = [
    "batch_runner",
    "freshness",
    "forget_elsewhere",
    "invalidate_month",
    "job_outcome",
    "month_leases",
    "prefetcher",
    "register_gauges",
]

_ITEM_OF_JOB = {
    JobStatus.COMPLETED: ItemState.SUCCEEDED,
    JobStatus.FAILED: ItemState.FAILED,
    JobStatus.CANCELLED: ItemState.CANCELLED,
}


def invalidate_month(cache: CacheService, month: str) -> None:
    """Drop the cached reads of a month: its jobs, progress and month-end snapshots."""
    cache.invalidate("status", ("jobs", month))
    cache.invalidate("status", ("progress", month))
    cache.invalidate("snapshots", month)


def forget_elsewhere(cache: CacheService, storage: Storage) -> Callable[[Changes], None]:
    """What to do when another process committed ``changes``: drop what is cached of them.
    The storage cache goes first, so that a load the console's invalidation discards
    is the only one that could have read its old values."""

    def forget(changes: Changes) -> None:
        if changes.everything:
            storage.clear_cache()
            for layer in ("jobs", "timelines", "status", "snapshots"):
                cache.clear(layer)
            return
        storage.forget(set(changes.job_ids), set(changes.months))
        for job_id in changes.job_ids:
            cache.invalidate_job(job_id)
        for month in changes.months:
            invalidate_month(cache, month)

    return forget


def freshness(
    cache: CacheService, storage: Storage, clock: Clock, *, interval_s: float = POLL_INTERVAL_S
) -> Freshness:
    """The thread that drops what other processes changed: it polls the change feed
    (made now, so that no commit after this is missed) and, on PostgreSQL, wakes at
    once on their notifications (:func:`~engine.store.changes.waker`)."""
    return Freshness(
        feed=ChangeFeed(storage.database, clock=clock),
        on_change=forget_elsewhere(cache, storage),
        interval_s=interval_s,
        wake=waker(storage.database),
    )


def job_outcome(storage: Storage) -> Callable[[Mapping[str, Any]], ItemState | None]:
    """The item state of a finished job (for the batches a stopped process left)."""

    def outcome(spec: Mapping[str, Any]) -> ItemState | None:
        if "job_id" not in spec:
            return None
        try:
            return _ITEM_OF_JOB.get(storage.get_job(int(spec["job_id"])).status)
        except NotFoundError:
            return None

    return outcome


def batch_runner(
    settings: Settings,
    storage: Storage,
    *,
    execute: Execute,
    should_skip: Callable[[Spec], bool],
    clock: Clock,
    instrument: Instrument,
) -> AnyRunner:
    """The thread runner (default), or the procrastinate one (``[batch] runner``)."""
    if settings.batch.runner == "procrastinate":
        return DistributedRunner(
            settings.batch, db_url=settings.storage.db_url, store=SqlBatchStore(storage),
            engine=storage.engine, execute=execute, should_skip=should_skip, clock=clock,
            before_defer=storage.flush,
        )  # fmt: skip
    return BatchRunner(
        settings.batch,
        store=SqlBatchStore(storage),
        execute=execute,
        should_skip=should_skip,
        outcome=job_outcome(storage),
        clock=clock,
        instrument=instrument,
    )


def month_leases(
    storage: Storage, batch: AnyRunner, clock: Clock, settings: StorageSettings
) -> MonthLeases:
    """The console's month leases: one process works a month at a time."""
    leases = SqlLeases(storage, clock=clock)
    return MonthLeases(leases, runner=batch, ttl_s=settings.lease_ttl_s, flush=storage.flush)


def prefetcher(storage: Storage) -> Prefetch:
    """A job read often: load its timeline and its district's other recent jobs."""

    def prefetch(cache: CacheService, job_id: int) -> None:
        with reads_for("prefetch"):  # for the UIs' reads: not the engine's work
            job = storage.get_job(job_id)
            timeline = storage.timeline(job_id)
            cache.set("timelines", job_id, timeline, tags=(("job", job_id),), prefetched=True)
            for other in storage.recent_jobs(job.district):
                if other.id != job_id:
                    tags = (("job", other.id),)
                    cache.set("jobs", other.id, other, tags=tags, prefetched=True)

    return prefetch


def register_gauges(
    monitor: Monitor, cache: CacheService, storage: Storage, batch: AnyRunner
) -> None:
    """The figures the monitor samples beside the process's resources."""

    def cache_reads() -> float:
        total = cache.stats().total
        return float(total.hits + total.misses)

    monitor.register_gauge("cache_hit_rate", lambda: cache.stats().total.hit_rate)
    monitor.register_gauge("cache_reads", cache_reads)
    monitor.register_gauge("storage_pending_writes", lambda: float(storage.pending_writes()))
    monitor.register_gauge("batch_queue_depth", lambda: float(batch.queue_depth()))
    monitor.register_gauge("batch_running", lambda: float(batch.running_count()))
