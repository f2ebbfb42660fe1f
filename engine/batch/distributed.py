"""The procrastinate runner: batches recorded as today, items run by ``recon worker``.

With ``[batch] runner = "procrastinate"`` (PostgreSQL only) the console's
:class:`DistributedRunner` records a batch and its items in the same
:class:`~engine.store.batches.BatchStore` rows as the thread runner, and defers
one procrastinate job per item (task :data:`TASK`):

- the item's priority is the job's priority (procrastinate runs higher first);
- the job's ``lock`` is the item's (:func:`item_lock`): one item never runs twice at once;
- its queue is the batch's (:func:`batch_queue`), so a batch's jobs are found to cancel them.

Workers (:mod:`engine.batch.remote`) run the jobs and write every attempt, the
item's state and the batch's end into the store; so progress, ETA, attempt
history, lists and details are read from the store by any process. Retries are
procrastinate retries: :class:`ItemRetry` reschedules a job when the worker
raised :class:`RetryItem` with the delay :mod:`~engine.batch.policy` chose
(exponential from ``retryDelayMs``, full jitter, transient errors and timeouts only).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import procrastinate
from procrastinate import jobs as pjobs
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from procrastinate.schema import SchemaManager
from procrastinate.utils import utcnow

from engine.batch.config import batch_config, within_runner
from engine.batch.events import Listener, Listeners, event
from engine.batch.history import History
from engine.batch.records import (
    FINISHED,
    BatchDetail,
    BatchInfo,
    BatchProgress,
    ItemSpec,
    Spec,
    SubmitResult,
    entry,
    item_rows,
    new_batch,
    queued_row,
)
from engine.batch.runner import BatchRunner
from engine.batch.worker import Execute
from engine.clock import Clock
from engine.domain.models import ItemState
from engine.errors import BatchError, ConfigError
from engine.settings import BatchSettings
from engine.store.batches import BatchOwner, ItemRow, SqlBatchStore
from engine.store.taskqueue import ensure_schema
from engine.store.urls import libpq_url

TASK = "recon.batch_item"
"""The procrastinate task that runs one batch item."""

WATCH_TASK = "recon.watch_tick"
"""The procrastinate periodic task of the watcher's tick (``recon worker --watch``)."""

_WAIT_S = 0.2  # run(until_idle=True) reads the store this often
_ABORTABLE = ("todo", "doing")


def batch_queue(batch_id: int) -> str:
    return f"recon-batch-{batch_id}"


def item_lock(batch_id: int, item_id: int) -> str:
    return f"recon-item-{batch_id}-{item_id}"


class RetryItem(Exception):  # noqa: N818 - it asks for a retry, it is no error
    """Raised by a worker's task: run the job again after ``delay_s`` seconds."""

    def __init__(self, delay_s: float, why: str) -> None:
        super().__init__(why)
        self.delay_s = delay_s


class ItemRetry(BaseRetryStrategy):
    """procrastinate's retry strategy for :data:`TASK`: a job is retried when, and as
    late as, the worker says (:class:`RetryItem`); any other error is final."""

    def get_retry_decision(
        self, *, exception: BaseException, job: pjobs.Job
    ) -> RetryDecision | None:
        if isinstance(exception, RetryItem):
            return RetryDecision(retry_at=utcnow() + timedelta(seconds=exception.delay_s))
        return None


def needs_postgres(db_url: str) -> str:
    """The libpq URL of ``db_url``; ConfigError naming it unless it is PostgreSQL."""
    return libpq_url(db_url, needed_by='[batch] runner = "procrastinate"')


def make_app(db_url: str, run_item: Callable[..., Any] | None = None) -> procrastinate.App:
    """A procrastinate App on the engine's database, with :data:`TASK` registered
    (``run_item(context, batch_id, item_id, spec)``; deferring needs no body).
    ConfigError (naming the URL) unless it is a ``postgresql+psycopg://`` URL."""
    conninfo = needs_postgres(db_url)
    connector = procrastinate.PsycopgConnector(conninfo=conninfo, min_size=1, max_size=4)
    app = procrastinate.App(connector=connector)
    app.task(name=TASK, pass_context=True, retry=ItemRetry())(run_item or _not_here)
    return app


def watch_cron(every_s: float) -> str:
    """The cron line (seconds as a 6th field) of a tick every ``every_s`` seconds;
    ConfigError unless the period divides a minute, an hour or a day."""
    s = int(every_s)
    if s == every_s and s > 0:
        if s < 60 and 60 % s == 0:
            return f"* * * * * */{s}"
        if s % 60 == 0 and s < 3600 and 3600 % s == 0:
            return f"*/{s // 60} * * * *"
        if s % 3600 == 0 and 86400 % s == 0:
            return f"0 */{s // 3600} * * *"
    raise ConfigError(
        "watch period", every_s, "expected seconds that divide a minute, an hour or a day"
    )


def apply_schema(engine: Any) -> bool:
    """procrastinate's tables on the database of ``engine`` (SQLAlchemy), if missing."""
    return ensure_schema(engine, SchemaManager.get_schema())


def _not_here(*_: Any, **__: Any) -> None:
    raise BatchError("batch items run in recon worker processes")


def settings_of(config: str) -> BatchSettings:
    """A stored batch's settings (fields this code does not know are left out)."""
    known = {f.name for f in dataclasses.fields(BatchSettings)}
    return BatchSettings(**{k: v for k, v in json.loads(config).items() if k in known})


def ended_row(row: ItemRow, state: str, now: datetime, error: str | None) -> ItemRow:
    ended = row.copy()
    ended["status"], ended["error"], ended["finished_at"] = state, error, now
    return ended


class _NoLive:
    """Nothing is live in this process: every batch is read from the store."""

    def live_rows(self, batch_id: int) -> dict[int, ItemRow]:
        return {}

    def live_counts(self, batch_id: int) -> tuple[dict[str, int], float] | None:
        return None

    def known(self) -> set[int]:
        return set()

    def uncancelled(self) -> set[int]:
        return set()


class DistributedRunner:
    """The console's batch runner when items run on procrastinate workers. Same
    surface as :class:`~engine.batch.runner.BatchRunner`; thread-safe.

    Args:
        store: the batch store (the worker's writes land there too).
        engine: the SQLAlchemy engine of the database (procrastinate's schema).
        execute, should_skip: what a worker built on this console runs (see
            :mod:`engine.batch.remote`), as the thread runner gets them.
        before_defer: commits what items read (the month's new jobs) before they are queued.
    """

    def __init__(
        self,
        settings: BatchSettings,
        *,
        db_url: str,
        store: SqlBatchStore,
        engine: Any,
        execute: Execute,
        should_skip: Callable[[Spec], bool],
        clock: Clock,
        before_defer: Callable[[], object],
    ) -> None:
        needs_postgres(db_url)  # fail early
        self.settings = settings
        self.store = store
        self.db_url = db_url
        self.execute = execute  # what the workers of this console's process run
        self.should_skip = should_skip
        self._engine = engine
        self._clock = clock
        self._before_defer = before_defer
        self._history = History(store, _NoLive())
        self._listeners = Listeners()
        self._lock = threading.Lock()
        self._app: procrastinate.App | None = None
        self._submitted: list[int] = []
        self._closed = threading.Event()

    def app(self) -> procrastinate.App:
        """The procrastinate App, opened (and its schema applied) on first use."""
        with self._lock:
            if self._closed.is_set():
                raise BatchError("the batch runner is closed")
            if self._app is None:
                apply_schema(self._engine)
                self._app = make_app(self.db_url).open()
            return self._app

    # --- submitting and controlling ---------------------------------------------------

    def submit(
        self,
        items: Sequence[ItemSpec | tuple[Spec, int] | Spec],
        *,
        config: Mapping[str, Any] | None = None,
        name: str = "",
        owner: BatchOwner | None = None,
    ) -> SubmitResult:
        """Record a batch and defer one procrastinate job per item.

        ``owner`` is not recorded: workers run the batch on when the process that
        started it dies, so it is never taken for abandoned."""
        settings, notes = batch_config(self.settings, config)
        settings, limited = within_runner(settings, self.settings)
        entries = [entry(item) for item in items]
        if not entries:
            raise ConfigError("items", [], "a batch needs at least one item")
        app = self.app()
        self._before_defer()
        batch_id = self.store.create(new_batch(name, settings, entries, self._clock.now()))
        jobs = [
            pjobs.Job(id=None, queue=batch_queue(batch_id), lock=item_lock(batch_id, n),
                      queueing_lock=None, task_name=TASK, priority=priority,
                      task_kwargs={"batch_id": batch_id, "item_id": n, "spec": dict(spec)})
            for n, (spec, priority) in enumerate(entries, 1)
        ]  # fmt: skip
        try:
            app.job_manager.batch_defer_jobs(jobs)
        except BaseException:
            self._history.cancel(batch_id, self._clock.now())
            raise
        self._submitted.append(batch_id)
        return SubmitResult(batch_id, settings, notes + limited)

    def reconfigure(self, settings: BatchSettings) -> None:
        self.settings = settings

    def cancel(self, batch_id: int) -> None:
        """Cancel a batch: its unfinished items are recorded cancelled at once, queued
        jobs are cancelled and running ones aborted (their workers stop them)."""
        events = self._history.cancel(batch_id, self._clock.now())
        self._abort(queue=batch_queue(batch_id))
        self._listeners.emit(events)

    def cancel_item(self, batch_id: int, item_id: int) -> bool:
        """Cancel one item; False if it already finished."""
        stored, row = self.store.item(batch_id, item_id)
        row = row or queued_row(batch_id, item_id)
        if row["status"] in FINISHED:
            return False
        written, _ = self.store.record_item(
            ended_row(row, ItemState.CANCELLED.value, self._clock.now(), "cancelled"),
            self._clock.now(),
        )
        self._abort(lock=item_lock(batch_id, item_id))
        if written:
            spec = json.loads(stored.manifest)[item_id - 1][0]
            kind = ItemState.CANCELLED.value
            self._listeners.emit([event(kind, batch_id, item_id, spec, error="cancelled")])
        return written

    def cancel_matching(self, predicate: Callable[[Spec], bool]) -> int:
        """Cancel every unfinished item (of any process) whose spec matches."""
        found = [
            (stored.id, row["item_id"])
            for stored, rows in self.store.unfinished(set())
            for row, spec, _ in item_rows(stored, rows, {})
            if row["status"] not in FINISHED and predicate(spec)
        ]
        return sum(self.cancel_item(batch_id, item_id) for batch_id, item_id in found)

    def _abort(self, *, queue: str | None = None, lock: str | None = None) -> None:
        manager = self.app().job_manager
        for job in manager.list_jobs(queue=queue, lock=lock):
            if job.status in _ABORTABLE and job.id is not None:
                manager.cancel_job_by_id(job.id, abort=True)

    def listen(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def emit(self, events: list[dict[str, Any]]) -> None:
        """Tell this process's listeners of items its worker ran."""
        self._listeners.emit(events)

    def resume(self) -> list[int]:
        """Nothing to resume: unfinished items stay queued in procrastinate."""
        return []

    def take_over(self, name: str, *, by: int) -> list[int]:
        """Nothing to take over: a batch whose process stopped runs on in the workers."""
        return []

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        """Items run in ``recon worker`` processes: nothing to start here."""

    def run(self, *, until_idle: bool = True) -> None:
        """Wait until every batch submitted here is done (or, without ``until_idle``,
        until :meth:`close`)."""
        while not self._closed.is_set():
            if until_idle and all(self._done(b) for b in self._submitted):
                return
            self._closed.wait(_WAIT_S)

    def _done(self, batch_id: int) -> bool:
        stored, _ = self.store.item(batch_id, 0)  # the batch's row; no item 0
        return stored.finished_at is not None

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            app, self._app = self._app, None
        if app is not None:
            app.close()

    # --- reading ----------------------------------------------------------------------

    def progress(self, batch_id: int) -> BatchProgress:
        """The batch's counters, throughput and ETA from the store (any process)."""
        stored, rows = self.store.batch(batch_id)
        progress = progress_of(stored.id, stored.total, stored.created_at, stored.finished_at,
                               rows, self._clock.now())  # fmt: skip
        return dataclasses.replace(progress, throttled_s=stored.throttled_s)

    def queue_depth(self) -> int:
        return self._counts().get(ItemState.QUEUED.value, 0)

    def running_count(self) -> int:
        counts = self._counts()
        return counts.get(ItemState.RUNNING.value, 0) + counts.get(ItemState.RETRYING.value, 0)

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stored, rows in self.store.unfinished(set()):
            for row, _, _ in item_rows(stored, rows, {}):
                counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    def list_batches(self, limit: int = 100) -> list[BatchInfo]:
        return self._history.list_batches(limit, now=self._clock.now())

    def batch_detail(self, batch_id: int) -> BatchDetail:
        return self._history.batch_detail(batch_id, now=self._clock.now())


def progress_of(
    batch_id: int,
    total: int,
    created: datetime,
    finished: datetime | None,
    rows: Mapping[int, ItemRow],
    now: datetime,
) -> BatchProgress:
    """A stored batch's progress: counts by state, throughput since it was created."""
    counts = dict.fromkeys((s.value for s in ItemState), 0)
    for row in rows.values():
        counts[row["status"]] += 1
    counts[ItemState.QUEUED.value] += total - len(rows)
    ended = [r["finished_at"] for r in rows.values() if r["finished_at"] is not None]
    end = finished or now
    span = (end - created).total_seconds()
    rate = len(ended) / span if span > 0 else 0.0
    q, run, retry = (counts[s.value] for s in (ItemState.QUEUED, ItemState.RUNNING,
                                               ItemState.RETRYING))  # fmt: skip
    remaining = q + run + retry
    eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
    return BatchProgress(
        batch_id=batch_id, total=total, queued=q, running=run, retrying=retry,
        succeeded=counts["succeeded"], failed=counts["failed"], skipped=counts["skipped"],
        cancelled=counts["cancelled"], throughput=rate, eta_s=eta, elapsed_s=span,
        throttled_s=0.0, done=finished is not None,
        percent=100.0 * (total - remaining) / total if total else 100.0,
    )  # fmt: skip


__all__ = [
    "TASK",
    "WATCH_TASK",
    "AnyRunner",
    "DistributedRunner",
    "ItemRetry",
    "RetryItem",
    "apply_schema",
    "batch_queue",
    "ended_row",
    "item_lock",
    "make_app",
    "needs_postgres",
    "progress_of",
    "settings_of",
    "watch_cron",
]


AnyRunner = BatchRunner | DistributedRunner
"""The console's batch runner: threads (default) or procrastinate."""
