"""The composition root: one settings object in, every engine part out.

The CLI, the dashboard and the API all build their engine here, so they watch
the same storage, cache, monitor and batch runner that do the work.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from engine.app.alerts import build_notifier
from engine.app.months import MONTH_END_BATCH, month_batch, replay_bound
from engine.app.tasks import TaskRegistry
from engine.app.wiring import (
    batch_runner,
    freshness,
    invalidate_month,
    month_leases,
    prefetcher,
    register_gauges,
)
from engine.batch.distributed import DistributedRunner, needs_postgres
from engine.batch.runner import SubmitResult
from engine.cache import CacheService
from engine.cancel import CancelToken
from engine.clock import Clock, SystemClock
from engine.domain.models import (
    ItemState,
    Job,
    TimelineEntry,
    month_end,
    validate_district,
    validate_month,
)
from engine.errors import ConfigError, ConflictError, EngineError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.monitor.core import Monitor
from engine.monitor.recorder import Recorder
from engine.reconcile import MonthProgress, Reconciler
from engine.settings import LiveSettings, Loaded, Settings, StorageSettings
from engine.sources.base import Source
from engine.sources.factory import make_source
from engine.store.cached import CachedJobStore, ReadCache
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
    ``settings.optimizations`` may name the parts one by one (``batched_writes``,
    ``caches``; see :meth:`~engine.settings.StorageSettings.parts`).
    """
    clock = clock or SystemClock()
    database = Database(settings.db_url, instrument=instrument, labels={"mode": settings.mode})
    parts = settings.parts()
    cached = "caches" in parts
    cache = ReadCache(
        enabled=cached and settings.enable_in_memory_cache,
        max_size=settings.cache_max_size,
        index_timeout_ms=settings.index_cache_timeout_ms,
        clock=clock,
    )
    writes: WritePolicy = Immediate(database)
    if "batched_writes" in parts:
        writes = Deferred(
            database,
            batch_size=settings.batch_size,
            max_delay_ms=settings.max_write_delay_ms,
            clock=clock,
        )
    sql = SqlJobStore(database, writes, clock=clock)
    jobs: JobStore = CachedJobStore(sql, writes, cache) if cached else sql
    return Storage(database=database, writes=writes, jobs=jobs, cache=cache)


def _loaded(settings: Settings | Loaded) -> Loaded:
    return settings if isinstance(settings, Loaded) else Loaded(settings, {}, None)


def _make_source(
    settings: Settings, parts: frozenset[str], instrument: Instrument, clock: Clock
) -> Source:
    """The source, sharing summaries and reusing rows as the storage parts say."""
    return make_source(
        settings.source,
        share_summary="shared_summary" in parts,
        reuse_rows="caches" in parts,
        instrument=instrument,
        clock=clock,
    )


class Console:
    """Builds and owns the engine's parts. Thread-safe; share one per process."""

    def __init__(
        self,
        settings: Settings | Loaded,
        *,
        clock: Clock | None = None,
        source: Source | None = None,
    ) -> None:
        """``settings``: as :func:`engine.settings.load_traced` gives them, the Settings
        page then says where each value came from (plain Settings: "default" or not)."""
        self.live_settings = LiveSettings(_loaded(settings))
        settings = self.live_settings.current
        if settings.batch.runner == "procrastinate":  # before anything is opened
            needs_postgres(settings.storage.db_url)
        self.clock = clock or SystemClock()
        self.recorder = rec = Recorder(clock=self.clock)
        self.storage = open_storage(settings.storage, clock=self.clock, instrument=rec)
        perf = SqlPerfStore(self.storage)
        self.monitor = Monitor(settings.monitor, clock=self.clock, store=perf, recorder=rec)
        cache, prefetch = settings.cache, prefetcher(self.storage)
        self.cache = CacheService(cache, clock=self.clock, instrument=rec, prefetch=prefetch)
        parts = settings.storage.parts()
        self.source = source or _make_source(settings, parts, self.recorder, self.clock)
        self.reconciler = Reconciler(
            storage=self.storage,
            source=self.source,
            settings=settings.recon,
            clock=self.clock,
            instrument=self.recorder,
            on_write=self._on_write,
            keep_last_entry="caches" in parts,
        )
        self.batch = batch_runner(
            settings, self.storage, execute=self._execute, should_skip=self._should_skip,
            clock=self.clock, instrument=self.recorder,
        )  # fmt: skip
        self.batch.listen(self._on_batch_event)
        self.leases = month_leases(self.storage, self.batch, self.clock, settings.storage)
        self.alerts = build_notifier(self, clock=self.clock)  # events: engine.notify
        self.tasks = TaskRegistry(clock=self.clock)  # long UI-started work, e.g. before/after
        self.freshness = freshness(self.cache, self.storage, self.clock)  # before any read
        register_gauges(self.monitor, self.cache, self.storage, self.batch)
        self._closed = threading.Event()
        self._start_lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        """The process's settings now, with the changes applied while it runs."""
        return self.live_settings.current

    # --- month-end runs ------------------------------------------------------------------

    def start_batch(
        self,
        month: str,
        *,
        districts: Sequence[str] | None = None,
        priority: int = 0,
        config: Mapping[str, Any] | None = None,
        until: date | None = None,
    ) -> SubmitResult:
        """Start (or resume) ``month`` for ``districts`` as one batch of district replays.

        Collection dates are replayed up to ``until`` (default: today by the
        clock), never later; a month that has not ended by then, or an
        ``until`` after today, is refused (ConfigError, see
        :func:`~engine.app.months.replay_bound`). Jobs whose closing period is
        still open on that day stay active.

        A month that a batch of this process is still working is refused
        (ConflictError), and so is a month another process works (LeaseHeld, a
        ConflictError naming it): two replays of one job must never run at once.
        The month's lease is held until the batch ends (see :mod:`engine.app.month_lease`).
        """
        result = self._start(month, districts, priority, config, until, again=True)
        assert result is not None  # a finished month gets a new run
        return result

    def continue_month(
        self,
        month: str,
        *,
        districts: Sequence[str] | None = None,
        until: date | None = None,
        live: bool = False,
    ) -> SubmitResult | None:
        """Like :meth:`start_batch`, but a finished month gets no new run (None): for a start
        that waited for another process, and the watcher. ``live``: the source serves only
        the day ``until``, so earlier days not checked yet are gaps (a live dashboard)."""
        return self._start(month, districts, 0, None, until, again=False, live=live)

    def _start(
        self,
        month: str,
        districts: Sequence[str] | None,
        priority: int,
        config: Mapping[str, Any] | None,
        until: date | None,
        *,
        again: bool,
        live: bool = False,
    ) -> SubmitResult | None:
        month = validate_month(month)
        bound = replay_bound(month, until=until, today=self.today())
        chosen = [validate_district(d) for d in districts] if districts else self.districts(month)
        if not chosen:
            first = month_end(month) + timedelta(days=1)
            raise ConfigError(
                "source", self.source.name, f"holds no exports for {month} (none for {first})"
            )
        with self._start_lock:
            busy = month_batch(self, month)
            if busy is not None:
                raise ConflictError(
                    "month", month, f"batch {busy} is still working it: wait or cancel it first"
                )
            if self.leases.take(month):
                self.storage.clear_cache()  # another process may have worked it meanwhile
            try:
                result = self._submit_month(month, chosen, priority, config, bound, again, live)
            except BaseException:
                self.leases.give_up(month)
                raise
            if result is None or isinstance(self.batch, DistributedRunner):
                # Workers of any process run a procrastinate batch; the stored batch
                # keeps the month from a second start (month_batch reads the store).
                self.leases.give_up(month)
            else:
                self.leases.bind(month, result.batch_id)
            return result

    def today(self) -> date:
        """Today by the engine's clock: the last collection date anything may ask for."""
        return self.clock.now().date()

    def _submit_month(
        self,
        month: str,
        chosen: list[str],
        priority: int,
        config: Mapping[str, Any] | None,
        until: date,
        again: bool,
        live: bool,
    ) -> SubmitResult | None:
        if not again and self._closed_meanwhile(month):
            return None
        jobs = self.reconciler.start_month(month, chosen, mode=self.settings.storage.mode)
        invalidate_month(self.cache, month)
        spec: dict[str, Any] = {"kind": "reconcile", "month": month, "until": until.isoformat()}
        if live:  # days before `until` cannot be fetched any more: gaps
            spec["gaps_before"] = until.isoformat()
        items = [
            ({**spec, "job_id": j.id, "district": j.district}, priority)
            for j in jobs
            if not j.status.finished
        ]
        config = dict(config or {})
        if "concurrency" not in self.settings.storage.parts():
            config["maxConcurrentJobs"] = 1  # the "before": sequential
        name = MONTH_END_BATCH.format(month=month)
        # Owned by the month's lease: abandoned once it expires (workers' batches have none).
        result = self.batch.submit(items, config=config, name=name, owner=self.leases.owner(month))
        self.batch.take_over(name, by=result.batch_id)  # batches of the month a killed run left
        return result

    def _closed_meanwhile(self, month: str) -> bool:
        latest = self.storage.jobs(month=month)
        return bool(latest) and all(j.status.finished for j in latest)

    def districts(self, month: str) -> list[str]:
        """Every district the source publishes for ``month``."""
        return self.source.districts(month, month_end(month) + timedelta(days=1))

    def _execute(self, spec: Mapping[str, Any], token: CancelToken) -> Any:
        if spec.get("kind") != "reconcile":
            raise ConfigError("kind", spec.get("kind"), "unknown batch item kind")
        # Items of batches stored before the bound existed replay up to today.
        until = date.fromisoformat(spec["until"]) if "until" in spec else self.today()
        gaps = date.fromisoformat(spec["gaps_before"]) if "gaps_before" in spec else None
        job = self.reconciler.replay(int(spec["job_id"]), token, until=until, gaps_before=gaps)
        return {"status": job.status.value, "reason": job.reason.value if job.reason else None}

    def _should_skip(self, spec: Mapping[str, Any]) -> bool:
        return self.storage.get_job(int(spec["job_id"])).status.finished

    def _on_batch_event(self, event: Mapping[str, Any]) -> None:
        kind, spec = event.get("type"), event.get("spec") or {}
        if kind not in (ItemState.FAILED, ItemState.CANCELLED) or "job_id" not in spec:
            return
        if self.leases.lost(str(spec.get("month"))):
            return  # the month's jobs are another process's now: leave them to it
        # A job fails only when the runner has given up on its item (retries exhausted).
        if kind == ItemState.FAILED:
            self.reconciler.fail(int(spec["job_id"]), str(event.get("error", "")))
        else:
            self.reconciler.cancel(int(spec["job_id"]))

    def settle(self, batch_id: int) -> None:
        """Make the jobs of a finished batch agree with its failed and cancelled items.

        The runner tells listeners of an item after counting it, so a batch can
        end before its last events reach the jobs; a summary taken after this
        call counts every job's outcome. Applying an outcome twice changes nothing.
        """
        for item in self.batch.batch_detail(batch_id).items:
            if item.status in (ItemState.FAILED, ItemState.CANCELLED):
                self._on_batch_event({"type": item.status, "spec": item.spec, "error": item.error})

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

    # --- wiring ----------------------------------------------------------------------------------

    def _on_write(self, job: Job) -> None:
        # Every job write (each check, each transition): the cache forgets the job, and the
        # notifier sees it (failures, late revisions, finished months; no I/O on a check).
        self._invalidate(job)
        self.alerts.observe(job)

    def _invalidate(self, job: Job) -> None:
        self.cache.invalidate_job(job.id)
        invalidate_month(self.cache, job.month)

    def start_background(self) -> None:
        """Start the background threads a long-lived process wants (dashboard, API):
        among them the one that keeps its caches fresh with other processes' commits."""
        self.freshness.start()
        self.cache.start()
        self.monitor.start()
        self.batch.start()
        self.alerts.start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        failures: list[EngineError] = []
        self.freshness.close()
        # The notifier after the batch runner (its last jobs' events); the leases then
        # (they commit the storage's last writes, then free the months), the storage last.
        parts = (
            self.batch, self.alerts, self.leases, self.cache, self.monitor, self.source,
            self.storage,
        )  # fmt: skip
        for part in parts:
            try:
                part.close()
            except EngineError as exc:  # close the rest; report the first failure
                failures.append(exc)
        if failures:
            raise failures[0]


__all__ = ["Console", "open_storage"]
