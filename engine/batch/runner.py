"""The batch runner: a priority queue of work items run by a few threads at a time.

The runner is generic: the console gives it an ``execute(spec, token)`` function
and submits JSON-serializable specs (``{"kind": "reconcile", "job_id": 17, ...}``)::

    runner = BatchRunner(settings.batch, storage=storage, execute=execute)
    result = runner.submit([ItemSpec({"n": 1}, priority=5), ({"n": 2}, 0)], name="demo")
    runner.run(until_idle=True)          # CLI and tests; start() runs it in the background
    runner.progress(result.batch_id)     # from any thread

Behaviour:

- Higher priority first, ties in submission order (across batches too). At most
  ``maxConcurrentJobs`` of the runner run at once; a batch may ask for fewer.
  Several batches share the workers and queue behind each other.
- Each attempt gets a :class:`CancelToken`; at ``timeoutMs`` it is cancelled
  with ``timeout=True``. A retry starts only after the timed-out attempt has
  returned, in the same worker thread, so two attempts of one item never overlap.
- Transient errors (see :func:`is_transient`) are retried up to ``retryAttempts``
  times after :func:`retry_delay` (exponential from ``retryDelayMs``, capped at
  :data:`MAX_RETRY_DELAY_S`, full jitter); waits go through the injected clock.
- While resident memory is above ``memoryThresholdMB`` no new item starts;
  the time spent waiting is summed per batch. Nothing is cleared to free memory.
- Batches, items and every attempt are stored. Finished items are written in
  groups of ``batchSize`` per transaction by the dispatcher thread (the rest when
  the batch ends or on :meth:`close`). After a crash, :meth:`resume` continues
  unfinished batches: items recorded as finished never run again; items that
  finished after the last write are run again unless ``should_skip`` says their
  job is already completed, so ``execute`` must leave a trace ``should_skip`` sees.

Events go to listeners as dicts: ``{"type": ..., "batch_id": ..., "item_id": ...,
"spec": ..., "attempt": ..., "error": ...}`` with type ``started``, ``retried``,
``succeeded``, ``failed``, ``skipped``, ``cancelled`` or ``batch_finished``.
Listeners run in the runner's threads and must be quick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any

import httpx
import psutil
from sqlalchemy import Connection, Row, bindparam, func, insert, select, update

from engine.cancel import CancelToken
from engine.clock import Clock, SystemClock, as_utc
from engine.errors import (
    BatchError,
    ConfigError,
    ItemCancelled,
    ItemTimeout,
    NotFoundError,
    StorageError,
)
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.settings import BatchSettings, Settings, clamp
from engine.store.bulk import Prepared, dialect_insert
from engine.store.schema import batch_items, batches
from engine.store.storage import Storage

log = logging.getLogger(__name__)

# Item states; the counters of a batch always add up to its total.
QUEUED, RUNNING, RETRYING = "queued", "running", "retrying"
SUCCEEDED, FAILED, SKIPPED, CANCELLED = "succeeded", "failed", "skipped", "cancelled"
STATES = (QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED, SKIPPED, CANCELLED)
FINISHED = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})

# Attempt outcomes besides SUCCEEDED and CANCELLED.
TIMEOUT, TRANSIENT, PERMANENT = "timeout", "transient", "permanent"
INTERRUPTED = "interrupted"  # stopped by close(); the item runs again after resume
_RETRYABLE = frozenset({TIMEOUT, TRANSIENT})

MAX_RETRY_DELAY_S = 60.0
_POLL_S = 0.05  # how often deadlines and memory are checked, and backoff waits check for cancel
_RATE_WINDOW = 50  # throughput is smoothed over the last this many finished items
_SPINS = 100  # tries of a worker to take the lock without queueing on it (see _taken)
_CLOSE_GRACE_S = 10.0  # close() waits this long for attempts that ignore their token

Spec = Mapping[str, Any]
Listener = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ItemSpec:
    """One item of work: a JSON-serializable spec for ``execute``, and its priority."""

    spec: Spec
    priority: int = 0


@dataclass(frozen=True)
class SubmitResult:
    batch_id: int
    config: BatchSettings
    """The batch's settings after clamping."""
    notes: tuple[str, ...]
    """What clamping changed, for the user to see."""


@dataclass(frozen=True)
class BatchProgress:
    """A consistent snapshot: the item counters add up to ``total``."""

    batch_id: int
    total: int
    queued: int
    running: int
    retrying: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    throughput: float
    """Finished items per second over the last few dozen."""
    eta_s: float | None
    """Seconds left at the current throughput; None before anything finished."""
    elapsed_s: float
    throttled_s: float
    done: bool
    """Every item finished and recorded."""
    percent: float


@dataclass(frozen=True)
class AttemptRecord:
    attempt: int
    started_at: datetime
    ended_at: datetime
    outcome: str
    error: str | None


@dataclass(frozen=True)
class ItemRecord:
    item_id: int
    spec: Spec
    priority: int
    status: str
    result: Any
    error: str | None
    finished_at: datetime | None
    attempts: tuple[AttemptRecord, ...]


@dataclass(frozen=True)
class BatchInfo:
    batch_id: int
    name: str
    status: str
    """running, finished or cancelled."""
    created_at: datetime
    finished_at: datetime | None
    total: int
    counts: Mapping[str, int]
    throttled_s: float
    config: Mapping[str, Any]


@dataclass(frozen=True)
class BatchDetail:
    info: BatchInfo
    items: tuple[ItemRecord, ...]


def is_transient(exc: BaseException) -> bool:
    """Whether retrying can help: timeouts, connection errors, HTTP 5xx, 408 and 429.

    Parse errors, configuration errors and other 4xx responses are permanent;
    engine errors say so with their ``transient`` attribute.
    """
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code in (408, 429)  # 408/429 ask the client to come back later
    if isinstance(exc, httpx.TransportError | OSError | TimeoutError):
        return True
    return bool(getattr(exc, "transient", False))


def retry_delay(
    retry: int, base_s: float, rng: random.Random, cap_s: float = MAX_RETRY_DELAY_S
) -> float:
    """Seconds to wait before retry number ``retry`` (1-based).

    Full jitter: uniform between 0 and ``base_s * 2 ** (retry - 1)`` capped at
    ``cap_s``, so that items failing together do not retry together.
    """
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** (retry - 1)))


def batch_config(
    base: BatchSettings, config: Mapping[str, Any] | None
) -> tuple[BatchSettings, tuple[str, ...]]:
    """``base`` with a user's values (seed or field names) checked and clamped, and notes."""
    names = {f.metadata["seed"]: f.name for f in dataclasses.fields(BatchSettings)}
    values = {names.get(key, key): value for key, value in (config or {}).items()}
    merged = Settings(batch=base).with_values("batch", **values).batch
    notes = tuple(note for name, raw in values.items() if (note := _clamp_note(name, raw)))
    return merged, notes


def _clamp_note(name: str, raw: Any) -> str | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    with contextlib.suppress(ValueError):
        return clamp("batch", name, raw if not isinstance(raw, str) else float(raw))[1]
    return None


def process_memory_reader() -> Callable[[], float]:
    """A reader of this process's resident memory in MB."""
    process = psutil.Process()
    return lambda: process.memory_info().rss / 2**20


class _Item:
    __slots__ = (
        "batch",
        "item_id",
        "spec",
        "priority",
        "seq",
        "status",
        "attempt",
        "token",
        "deadline",
        "timed_out",
        "stop",
        "history",
        "progressed",
    )

    def __init__(
        self, batch: _Batch, item_id: int, spec: Spec, priority: int, seq: int, history: list[str]
    ) -> None:
        self.batch = batch
        self.item_id = item_id
        self.spec = spec
        self.priority = priority
        self.seq = seq
        self.status = QUEUED
        self.attempt = len(history)
        self.token: CancelToken | None = None
        self.deadline = 0.0
        self.timed_out = False
        self.stop: str | None = None  # CANCELLED or INTERRUPTED once told to stop
        self.history = history  # every attempt, each a JSON object (see _attempt_json)
        self.progressed = False  # the last attempt made progress


class _Batch:
    def __init__(self, batch_id: int, name: str, settings: BatchSettings, started: float) -> None:
        self.id = batch_id
        self.name = name
        self.settings = settings
        # Items by (-priority, seq), fixed at submit; those no longer queued are skipped.
        self.queue: deque[_Item] = deque()
        self.live: dict[int, _Item] = {}  # items not finished
        self.counts = dict.fromkeys(STATES, 0)
        self.total = 0
        self.active = 0  # items holding a worker (running or waiting to retry)
        self.cancelled = False
        self.flush_requested = False
        self.finalizing = False  # its last write is under way
        self.finished = False
        self.pending: list[dict[str, Any]] = []  # rows of finished (or interrupted) items
        self.writing: list[dict[str, Any]] = []  # rows taken for a write not committed yet
        self.throttle_since: float | None = None
        self.throttled_s = 0.0
        self.started = started
        self.ended: float | None = None
        self.done_times: deque[float] = deque([started], maxlen=_RATE_WINDOW + 1)

    def head(self) -> _Item | None:
        queue = self.queue
        while queue and queue[0].status != QUEUED:
            queue.popleft()
        return queue[0] if queue else None

    def move(self, item: _Item, status: str) -> None:
        self.counts[item.status] -= 1
        self.counts[status] += 1
        item.status = status

    def throttled(self, now: float) -> float:
        since = self.throttle_since
        return self.throttled_s + (now - since if since is not None else 0.0)

    def progress(self, now: float) -> BatchProgress:
        c = self.counts
        end = self.ended if self.ended is not None else now
        span = end - self.done_times[0]
        rate = (len(self.done_times) - 1) / span if span > 0 else 0.0
        remaining = c[QUEUED] + c[RUNNING] + c[RETRYING]
        eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
        return BatchProgress(
            batch_id=self.id,
            total=self.total,
            queued=c[QUEUED],
            running=c[RUNNING],
            retrying=c[RETRYING],
            succeeded=c[SUCCEEDED],
            failed=c[FAILED],
            skipped=c[SKIPPED],
            cancelled=c[CANCELLED],
            throughput=rate,
            eta_s=eta,
            elapsed_s=end - self.started,
            throttled_s=self.throttled(now),
            done=self.finished,
            percent=100.0 * (self.total - remaining) / self.total if self.total else 100.0,
        )


@dataclass(slots=True)
class _Done:
    """A worker's result for one item: a finished state, or QUEUED if interrupted."""

    item: _Item
    status: str
    row: dict[str, Any]
    error: str | None


@dataclass
class _Flush:
    batch: _Batch
    items: list[dict[str, Any]]
    final: bool


_ITEM_NAMES = tuple(c.name for c in batch_items.c)


def _items_upsert(dialect: str) -> Any:
    """Insert item rows, replacing those of interrupted items."""
    stmt = dialect_insert(dialect, batch_items).values({n: bindparam(n) for n in _ITEM_NAMES})
    return stmt.on_conflict_do_update(
        index_elements=["batch_id", "item_id"],
        set_={c.name: stmt.excluded[c.name] for c in batch_items.c if not c.primary_key},
    )


_UPSERT_ITEMS = Prepared(_items_upsert, _ITEM_NAMES)


def _write_items(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _UPSERT_ITEMS.execute(conn, [tuple(row[n] for n in _ITEM_NAMES) for row in rows])


class BatchRunner:
    """Runs submitted batches; thread-safe. See the module docstring.

    Args:
        settings: defaults of every batch; ``max_concurrent_jobs`` is the global limit.
        storage: where batches, items and attempts are recorded.
        execute: does one item; gets the spec and the attempt's cancel token.
        should_skip: says an item's job is already completed (it is then skipped).
        clock: time for records, timeouts, backoff and throttling (tests: FakeClock).
        memory_reader: resident memory in MB (default: psutil, this process).
        instrument: ``timed("batch.item")`` wraps each attempt, ``timed("batch.run")`` run().
        rng: source of retry jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        settings: BatchSettings,
        *,
        storage: Storage,
        execute: Callable[[Spec, CancelToken], Any],
        should_skip: Callable[[Spec], bool] | None = None,
        clock: Clock | None = None,
        memory_reader: Callable[[], float] | None = None,
        instrument: Instrument = NO_INSTRUMENT,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._storage = storage
        self._execute = execute
        self._should_skip = should_skip
        self._clock = clock or SystemClock()
        self._memory_reader = memory_reader or process_memory_reader()
        self._instrument = instrument
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers wait here for an item
        self._changed = threading.Condition(self._lock)  # the dispatcher and run() wait here
        self._batches: dict[int, _Batch] = {}
        self._open: dict[int, _Batch] = {}  # batches not finished
        self._running: set[_Item] = set()  # items inside an attempt, watched for timeouts
        self._seq = itertools.count()
        self._memory_mb = self._memory_reader()
        self._memory_at = self._clock.monotonic()
        self._throttling = False  # some batch is throttled: read memory at every tick
        self._listeners: tuple[Listener, ...] = ()
        self._workers: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None
        self._dispatching = False  # run() or the background thread dispatches
        self._background = False  # start() was called
        self._closing = False
        self._fatal: StorageError | None = None  # the database failed: stop, keep work unfinished

    # --- submitting and controlling ---------------------------------------------------

    def submit(
        self,
        items: Sequence[ItemSpec | tuple[Spec, int] | Spec],
        *,
        config: Mapping[str, Any] | None = None,
        name: str = "",
    ) -> SubmitResult:
        """Record a batch and queue its items; ``config`` (seed or field names) is clamped."""
        settings, notes = batch_config(self.settings, config)
        if settings.max_concurrent_jobs > self.settings.max_concurrent_jobs:
            limit = self.settings.max_concurrent_jobs
            notes += (
                f"maxConcurrentJobs {settings.max_concurrent_jobs} limited to the runner's {limit}",
            )
            settings = dataclasses.replace(settings, max_concurrent_jobs=limit)
        entries = [_entry(item) for item in items]
        if not entries:
            raise ConfigError("items", [], "a batch needs at least one item")
        self._check_open()
        batch_id = self._insert_batch(name, settings, entries)
        with self._lock:
            rows = [(n, spec, prio, list[Any]()) for n, (spec, prio) in enumerate(entries, 1)]
            self._add_batch(batch_id, name, settings, {}, rows)
        return SubmitResult(batch_id, settings, notes)

    def cancel(self, batch_id: int) -> None:
        """Cancel a batch: queued items are dropped at once, running ones are stopped.

        A batch left unfinished by another (dead) process is cancelled in the database.
        """
        with self._lock:
            # A closed (or failed) runner no longer writes: cancel in the database.
            stopped = self._closing or self._fatal is not None
            batch = None if stopped else self._open.get(batch_id)
            events = self._cancel_live(batch) if batch is not None else []
        if batch is None:
            events = self._cancel_stored(batch_id)
        else:
            with self._storage.transaction("batch_cancel") as conn:
                conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status == "running")
                    .values(status="cancelled")
                )
        self._emit(events)

    def cancel_item(self, batch_id: int, item_id: int) -> bool:
        """Cancel one item; False if it already finished."""
        with self._lock:
            self._check_open_locked()
            if batch_id not in self._batches:
                raise NotFoundError("batch", batch_id, "no such batch in this process")
            batch = self._batches[batch_id]
            item = batch.live.get(item_id)
            if item is None:
                return False
            events = self._drop([item]) if item.status == QUEUED else []
            self._stop(item, CANCELLED)
        self._emit(events)
        return True

    def cancel_matching(self, predicate: Callable[[Spec], bool]) -> int:
        """Cancel every unfinished item of this process whose spec matches; return how many."""
        with self._lock:
            found = [
                (batch.id, item.item_id)
                for batch in self._open.values()
                for item in batch.live.values()
                if predicate(item.spec)
            ]
        return sum(self.cancel_item(batch_id, item_id) for batch_id, item_id in found)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event; returns a function that unsubscribes."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(f for f in self._listeners if f is not listener)

        return unsubscribe

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the dispatcher in a background thread until :meth:`close` (dashboard, API)."""
        with self._lock:
            self._check_open_locked()
            self._start_workers()
            self._background = True
            if self._dispatching:
                return  # run() dispatches now; it hands over to the background when it returns
            self._dispatching = True
        self._spawn_dispatcher()

    def _spawn_dispatcher(self) -> None:
        self._dispatcher = threading.Thread(
            target=self._dispatch, args=(False,), name="batch-dispatcher", daemon=True
        )
        self._dispatcher.start()

    def run(self, *, until_idle: bool = True) -> None:
        """Dispatch in the calling thread; return when every batch is finished.

        With ``until_idle=False`` it returns only after :meth:`close`. If the
        dispatcher already runs (``start()``), this waits for the same moment.
        """
        with self._timed("batch.run"):
            with self._lock:
                self._start_workers()
                dispatch = not self._dispatching
                self._dispatching = True
                while not dispatch and not self._closing and (self._open or not until_idle):
                    self._changed.wait()
            if dispatch:
                self._dispatch(until_idle)

    def close(self) -> None:
        """Stop every thread and write everything. Running items are interrupted, not
        cancelled: they stay unfinished and run again after :meth:`resume`."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            for batch in self._open.values():
                for item in batch.live.values():
                    self._stop(item, INTERRUPTED)
            self._work.notify_all()
            self._changed.notify_all()
        for thread in [*self._workers, self._dispatcher]:
            if thread is not None:
                thread.join(_CLOSE_GRACE_S)
        with self._lock:
            work = self._collect(everything=True)
        self._persist(work)

    def resume(self) -> list[int]:
        """Continue the batches a previous process left unfinished; return their ids.

        Items recorded as finished never run again; the others (including those
        that were running when the process died) are queued in their first order.
        """
        with self._lock:
            known = set(self._batches)
        with self._storage.reading("batch_resume") as conn:
            query = select(batches).where(batches.c.status == "running").order_by(batches.c.id)
            loaded = [
                (row, _stored_items(conn, row))
                for row in conn.execute(query)
                if row.id not in known
            ]
        resumed = []
        with self._lock:
            self._check_open_locked()
            for row, (counts, items) in loaded:
                if row.id not in self._batches:
                    settings = BatchSettings(**json.loads(row.config))
                    self._add_batch(row.id, row.name, settings, counts, items)
                    resumed.append(row.id)
        return resumed

    # --- reading ----------------------------------------------------------------------

    def progress(self, batch_id: int) -> BatchProgress:
        """The batch's counters, throughput and ETA now (batches of this process)."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                raise NotFoundError("batch", batch_id, "no such batch in this process")
            return batch.progress(self._clock.monotonic())

    def queue_depth(self) -> int:
        """Items waiting to start, over every batch."""
        with self._lock:
            return sum(b.counts[QUEUED] for b in self._open.values())

    def running_count(self) -> int:
        """Items inside an attempt or waiting to retry, over every batch."""
        with self._lock:
            return sum(b.active for b in self._open.values())

    def list_batches(self, limit: int = 100) -> list[BatchInfo]:
        """The latest batches from the database (live counters for this process's batches)."""
        query = select(batches).order_by(batches.c.id.desc()).limit(limit)
        with self._storage.reading("batch_list") as conn:
            rows = conn.execute(query).all()
            counts = _stored_counts(conn, rows)
        return [self._info(row, counts[row.id]) for row in rows]

    def batch_detail(self, batch_id: int) -> BatchDetail:
        """A batch with every item and its attempts (what is not written yet included)."""
        live = self._live_view(batch_id)  # first: a row written meanwhile is then read too
        with self._storage.reading("batch_detail") as conn:
            row = _batch_row(conn, batch_id)
            stored = _stored_rows(conn, batch_id)
        records = []
        for n, (spec, priority) in enumerate(json.loads(row.items), 1):
            values = {**_queued_row(n), **stored.get(n, {}), **live.get(n, {})}
            records.append(_item_record(values, spec, priority))
        counts: dict[str, int] = {}
        for item in records:
            counts[item.status] = counts.get(item.status, 0) + 1
        return BatchDetail(self._info(row, counts), tuple(records))

    # --- the worker threads -------------------------------------------------------------

    def _start_workers(self) -> None:
        if not self._workers:
            self._workers = [
                threading.Thread(target=self._work_loop, name=f"batch-worker-{n}", daemon=True)
                for n in range(self.settings.max_concurrent_jobs)
            ]
            for thread in self._workers:
                thread.start()

    def _work_loop(self) -> None:
        done: _Done | None = None
        while (item := self._take(done)) is not None:
            try:
                done = self._run_item(item)
            except Exception as exc:  # a failing should_skip must not kill the worker
                log.exception("batch %s item %s", item.batch.id, item.item_id)
                done = self._done(item, FAILED, error=_describe(exc))

    def _take(self, done: _Done | None) -> _Item | None:
        """Count the worker's last item and pick its next one (one lock hold when busy)."""
        token = CancelToken()  # made outside the lock, which stays short
        with _taken(self._lock):
            if done is not None:
                self._conclude(done)
            item = self._pick(token)
        if done is not None and done.status != QUEUED and self._listeners:
            self._emit([_item_event(done.status, done.item, error=done.error)])
        if item is None:
            with self._lock:
                while not self._closing and (item := self._pick(token)) is None:
                    self._work.wait()
        return item

    def _pick(self, token: CancelToken) -> _Item | None:
        """The best queued item that may start now, armed for its first attempt (lock held)."""
        best: _Item | None = None
        for batch in self._open.values():
            if (
                batch.active >= batch.settings.max_concurrent_jobs
                or batch.throttle_since is not None
            ):
                continue
            head = batch.head()
            if head is not None and (
                best is None or (-head.priority, head.seq) < (-best.priority, best.seq)
            ):
                best = head
        if best is None or self._closing or self._fatal is not None:
            return None
        best.batch.queue.popleft()
        best.batch.active += 1
        best.batch.move(best, RUNNING)
        self._arm(best, token)
        return best

    def _arm(self, item: _Item, token: CancelToken) -> None:
        """Give the item's next attempt its token and deadline (lock held).

        The first attempt's deadline counts from when the item is picked.
        """
        item.token = token
        item.timed_out = False
        item.deadline = self._clock.monotonic() + item.batch.settings.timeout_ms / 1000
        self._running.add(item)

    def _run_item(self, item: _Item) -> _Done:
        if self._should_skip is not None and self._should_skip(item.spec):
            return self._done(item, SKIPPED)
        retries = 0
        while True:
            outcome, value = self._attempt(item)
            if outcome in _RETRYABLE and item.progressed:
                retries = 0  # the budget counts attempts that made no progress
            if outcome in _RETRYABLE and retries < item.batch.settings.retry_attempts:
                retries += 1
                if self._backoff(item, retries, value):
                    continue
                outcome = item.stop or CANCELLED
            return self._conclusion(item, outcome, value)

    def _attempt(self, item: _Item) -> tuple[str, Any]:
        token = item.token
        if token is None:  # a retry
            token = CancelToken()
            with self._lock:
                if item.stop is not None:
                    return item.stop, None
                self._arm(item, token)
                item.batch.move(item, RUNNING)
        if item.stop is not None:
            return item.stop, None
        item.attempt += 1
        if self._listeners:
            self._emit([_item_event("started", item)])
        started, started_mono = self._clock.now(), self._clock.monotonic()
        try:
            with self._timed("batch.item"):
                outcome, value = SUCCEEDED, self._execute(item.spec, token)
        except Exception as exc:
            outcome, value = self._classify(item, exc), exc
        item.progressed = token.steps > 0
        error = None if outcome == SUCCEEDED else _describe(value)
        duration = self._clock.monotonic() - started_mono
        record = _attempt_json(item.attempt, started, duration, outcome, error, item.progressed)
        item.history.append(record)
        return outcome, value

    def _classify(self, item: _Item, exc: Exception) -> str:
        if isinstance(exc, StorageError) and not exc.transient:
            self._give_up(exc)  # not the item's fault: it stays unfinished for a resume
            return INTERRUPTED
        if item.stop is not None:
            return item.stop
        if item.timed_out or isinstance(exc, ItemTimeout):
            return TIMEOUT
        if isinstance(exc, ItemCancelled):
            return CANCELLED
        return TRANSIENT if is_transient(exc) else PERMANENT

    def _backoff(self, item: _Item, retry: int, error: Any) -> bool:
        """Wait before retry ``retry``; False if the item was told to stop meanwhile."""
        delay = retry_delay(retry, item.batch.settings.retry_delay_ms / 1000, self._rng)
        with self._lock:
            self._running.discard(item)
            item.token = None
            if item.stop is not None:
                return False
            item.batch.move(item, RETRYING)
        self._emit([_item_event("retried", item, error=_describe(error))])
        end = self._clock.monotonic() + delay
        # Short steps so that a cancel is seen soon; a fake clock just advances.
        while item.stop is None and (left := end - self._clock.monotonic()) > 0:
            self._clock.sleep(min(left, _POLL_S))
        return item.stop is None

    def _conclusion(self, item: _Item, outcome: str, value: Any) -> _Done:
        if outcome == SUCCEEDED:
            return self._done(item, SUCCEEDED, result=value)
        if outcome == INTERRUPTED:
            return self._done(item, QUEUED)
        if outcome == CANCELLED:
            return self._done(item, CANCELLED, error="cancelled")
        return self._done(item, FAILED, error=_describe(value))

    def _done(
        self, item: _Item, status: str, *, result: Any = None, error: str | None = None
    ) -> _Done:
        # The row is serialized here, outside the lock.
        return _Done(item, status, self._row(item, status, result, error), error)

    def _conclude(self, done: _Done) -> None:
        """Count a worker's finished or interrupted item (lock held)."""
        item = done.item
        self._running.discard(item)
        item.token = None
        if done.status == QUEUED:  # interrupted by close(): resume runs it again
            item.batch.active -= 1
            item.batch.move(item, QUEUED)
            item.batch.pending.append(done.row)
        else:
            self._record(item, done.row)

    def _record(self, item: _Item, row: dict[str, Any]) -> None:
        """Count a finished item and queue its row for the writer (lock held)."""
        batch = item.batch
        if item.status != QUEUED:
            batch.active -= 1
        batch.move(item, row["status"])
        del batch.live[item.item_id]
        batch.pending.append(row)
        batch.done_times.append(self._clock.monotonic())
        if len(batch.pending) >= batch.settings.batch_size or not batch.live:
            self._changed.notify_all()

    def _row(self, item: _Item, status: str, result: Any, error: str | None) -> dict[str, Any]:
        finished = status in FINISHED
        return {
            "batch_id": item.batch.id,
            "item_id": item.item_id,
            "status": status,
            "attempts": item.attempt,
            "history": _history_json(item.history),
            "error": error,
            "finished_at": self._clock.now() if finished else None,
            "result": None if result is None else json.dumps(result, default=str),
        }

    def _stop(self, item: _Item, reason: str) -> None:
        if item.status in (RUNNING, RETRYING):
            item.stop = reason
            if item.token is not None:
                item.token.cancel(reason)

    def _drop(self, items: list[_Item]) -> list[dict[str, Any]]:
        """Cancel queued items at once (lock held); return their events, to emit unlocked."""
        for item in items:
            item.batch.flush_requested = True
            self._record(item, self._row(item, CANCELLED, None, "cancelled"))
        return [_item_event(CANCELLED, item, error="cancelled") for item in items]

    def _cancel_live(self, batch: _Batch) -> list[dict[str, Any]]:
        batch.cancelled = True
        events = self._drop([item for item in batch.live.values() if item.status == QUEUED])
        for item in batch.live.values():
            self._stop(item, CANCELLED)
        batch.queue.clear()
        return events

    def _cancel_stored(self, batch_id: int) -> list[dict[str, Any]]:
        now = self._clock.now()
        with self._storage.transaction("batch_cancel") as conn:
            done = conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status == "running")
                .values(status="cancelled", finished_at=now)
            ).rowcount
            if not done:
                raise NotFoundError("batch", batch_id, "no unfinished batch with this id")
            unfinished = _stored_items(conn, _batch_row(conn, batch_id))[1]
            rows = [
                _queued_row(n) | {"batch_id": batch_id, "status": CANCELLED, "error": "cancelled",
                                  "attempts": len(history), "history": _history_json(history),
                                  "finished_at": now}
                for n, _, _, history in unfinished
            ]  # fmt: skip
            _write_items(conn, rows)
        return [
            _event(CANCELLED, batch_id, n, spec, error="cancelled") for n, spec, _, _ in unfinished
        ]

    # --- the dispatcher: deadlines, memory, writes --------------------------------------

    def _dispatch(self, until_idle: bool) -> None:
        try:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._throttling or self._clock.monotonic() - self._memory_at >= _POLL_S:
                    self._memory_mb = self._memory_reader()
                    self._memory_at = self._clock.monotonic()
                with self._lock:
                    self._watch()
                    work = self._collect()
                    if not work:
                        if self._closing or (until_idle and not self._open):
                            return
                        self._changed.wait(_POLL_S if self._open else None)
                        continue
                self._persist(work)
        finally:
            with self._lock:
                handover = self._background and self._dispatcher is None and not self._closing
                self._dispatching = handover
                self._changed.notify_all()
            if handover:
                self._spawn_dispatcher()

    def _watch(self) -> None:
        """Throttle or release batches and stop attempts past their deadline (lock held)."""
        now = self._clock.monotonic()
        if any([self._update_throttle(batch, now) for batch in self._open.values()]):
            self._work.notify_all()
        self._throttling = any(b.throttle_since is not None for b in self._open.values())
        for item in self._running:
            if not item.timed_out and now >= item.deadline and item.token is not None:
                item.timed_out = True
                item.token.cancel(
                    f"timed out after {item.batch.settings.timeout_ms} ms", timeout=True
                )

    def _update_throttle(self, batch: _Batch, now: float) -> bool:
        """Start or end the batch's throttle period; True when it ends."""
        s = batch.settings
        over = s.enable_resource_throttling and self._memory_mb > s.memory_threshold_mb
        if over and batch.counts[QUEUED] and batch.throttle_since is None:
            batch.throttle_since = now
            log.info(
                "batch %s throttled: memory %.0f MB > %s MB",
                batch.id,
                self._memory_mb,
                s.memory_threshold_mb,
            )
        elif not (over and batch.counts[QUEUED]) and batch.throttle_since is not None:
            log.info("batch %s released after %.1f s", batch.id, now - batch.throttle_since)
            batch.throttled_s += now - batch.throttle_since
            batch.throttle_since = None
            return True
        return False

    def _collect(self, *, everything: bool = False) -> list[_Flush]:
        """Take the rows due for writing (lock held)."""
        work = []
        now = self._clock.monotonic()
        for batch in self._open.values():
            final = not batch.live and not batch.finalizing
            if (
                final
                or everything
                or batch.flush_requested
                or len(batch.pending) >= batch.settings.batch_size
            ):
                if final:
                    batch.finalizing = True
                    batch.throttle_since, batch.throttled_s = None, batch.throttled(now)
                    batch.ended = batch.ended if batch.ended is not None else now
                work.append(_Flush(batch, batch.pending, final))
                batch.writing = batch.writing + batch.pending
                batch.pending, batch.flush_requested = [], False
        return [f for f in work if f.items or f.final]

    def _persist(self, work: list[_Flush]) -> None:
        """Write in one transaction; on failure keep the rows for the next try."""
        if not work:
            return
        try:
            with self._storage.transaction("batch_flush") as conn:
                for flush in work:
                    self._write(conn, flush)
        except Exception as exc:
            with self._lock:
                for flush in work:
                    flush.batch.pending[:0] = flush.items
                    flush.batch.writing = []
                    flush.batch.finalizing &= not flush.final
            if isinstance(exc, StorageError) and not exc.transient:
                self._give_up(exc)
                return
            log.warning("batch runner: writing results failed, retrying: %s", exc)
            with self._lock:
                self._changed.wait(_POLL_S)
            return
        with self._lock:
            for flush in work:
                flush.batch.writing = []
        finished = [f.batch for f in work if f.final]
        if finished:
            self._announce(finished)

    def _write(self, conn: Connection, flush: _Flush) -> None:
        if flush.items:
            _write_items(conn, flush.items)
        if flush.final:
            b = flush.batch
            conn.execute(
                update(batches)
                .where(batches.c.id == b.id)
                .values(
                    status="cancelled" if b.cancelled else "finished",
                    finished_at=self._clock.now(),
                    throttled_s=b.throttled_s,
                )
            )

    def _give_up(self, exc: StorageError) -> None:
        """The database refuses writes: start nothing more and interrupt what runs.

        Interrupted items stay unfinished in the database, so ``recon run`` or
        :meth:`resume` continues them once the fault is gone; ``run()`` raises ``exc``.
        """
        with self._lock:
            if self._fatal is None:
                self._fatal = exc
                for batch in self._open.values():
                    for item in batch.live.values():
                        self._stop(item, INTERRUPTED)
            self._work.notify_all()
            self._changed.notify_all()

    def _announce(self, finished: list[_Batch]) -> None:
        with self._lock:
            for batch in finished:
                batch.finished = True
                self._open.pop(batch.id, None)
            self._changed.notify_all()
        self._emit(
            [
                _event("batch_finished", b.id)
                | {"status": "cancelled" if b.cancelled else "finished"}
                for b in finished
            ]
        )

    # --- helpers ------------------------------------------------------------------------

    def _add_batch(
        self,
        batch_id: int,
        name: str,
        settings: BatchSettings,
        counts: Mapping[str, int],
        items: Iterable[tuple[int, Spec, int, list[Any]]],
    ) -> None:
        """Register a batch and queue its items (lock held)."""
        now = self._clock.monotonic()
        batch = _Batch(batch_id, name, settings, now)
        batch.counts.update(counts)
        for item_id, spec, priority, history in items:
            batch.live[item_id] = _Item(batch, item_id, spec, priority, next(self._seq), history)
        # A stable sort: ties stay in submission (seq) order.
        batch.queue.extend(sorted(batch.live.values(), key=lambda item: -item.priority))
        batch.counts[QUEUED] = len(batch.live)
        batch.total = sum(batch.counts.values())
        self._batches[batch_id] = batch
        self._open[batch_id] = batch
        self._update_throttle(batch, now)
        self._throttling |= batch.throttle_since is not None
        self._work.notify_all()
        self._changed.notify_all()

    def _insert_batch(
        self, name: str, settings: BatchSettings, entries: list[tuple[Spec, int]]
    ) -> int:
        header = {
            "name": name,
            "status": "running",
            "config": json.dumps(dataclasses.asdict(settings)),
            "total": len(entries),
            "items": _manifest(entries),
            "created_at": self._clock.now(),
            "throttled_s": 0.0,
        }
        with self._storage.transaction("batch_submit") as conn:
            batch_id: int = conn.execute(
                insert(batches).values(header).returning(batches.c.id)
            ).scalar_one()
        return batch_id

    def _info(self, row: Row[Any], counts: Mapping[str, int]) -> BatchInfo:
        throttled = float(row.throttled_s)
        with self._lock:
            batch = self._batches.get(row.id)
            if batch is not None:
                counts = {s: n for s, n in batch.counts.items() if n}
                throttled = batch.throttled(self._clock.monotonic())
        return BatchInfo(
            batch_id=row.id,
            name=row.name,
            status=row.status,
            created_at=as_utc(row.created_at),
            finished_at=row.finished_at and as_utc(row.finished_at),
            total=row.total,
            counts=dict(counts),
            throttled_s=throttled,
            config=json.loads(row.config),
        )

    def _live_view(self, batch_id: int) -> dict[int, dict[str, Any]]:
        """Item columns this process knows and has not written yet."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return {}
            live = {row["item_id"]: row for row in (*batch.writing, *batch.pending)}
            for item in batch.live.values():
                live[item.item_id] = self._row(item, item.status, None, None)
        return live

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("batch listener %r failed on %s", listener, event["type"])

    def _timed(self, operation: str) -> contextlib.AbstractContextManager[object]:
        return self._instrument.timed(operation)

    def _check_open(self) -> None:
        with self._lock:
            self._check_open_locked()

    def _check_open_locked(self) -> None:
        if self._closing:
            raise BatchError("the batch runner is closed")


@contextlib.contextmanager
def _taken(lock: threading.Lock) -> Iterator[None]:
    """Hold ``lock``, taken by workers between two items without queueing on it.

    A thread blocked on a CPython lock is handed the lock when it is released,
    and then waits for the interpreter lock: once two workers queue on it, every
    item costs two thread switches, and stays so (a lock convoy; short items ran
    three times slower). A worker that finds the lock held yields the
    interpreter lock instead and tries again, a few times before it queues.
    """
    for _ in range(_SPINS):
        if lock.acquire(blocking=False):
            break
        time.sleep(0)
    else:
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _entry(item: ItemSpec | tuple[Spec, int] | Spec) -> tuple[Spec, int]:
    if isinstance(item, ItemSpec):
        return item.spec, item.priority
    if isinstance(item, tuple):
        return item[0], int(item[1])
    return item, 0


def _dumps(spec: Spec) -> str:
    try:
        return json.dumps(spec)
    except (TypeError, ValueError) as exc:
        raise ConfigError("spec", spec, f"not JSON-serializable: {exc}") from exc


def _describe(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)


def _event(
    kind: str,
    batch_id: int,
    item_id: int | None = None,
    spec: Spec | None = None,
    attempt: int = 0,
    error: str | None = None,
) -> dict[str, Any]:
    return {"type": kind, "batch_id": batch_id, "item_id": item_id, "spec": spec,
            "attempt": attempt, "error": error}  # fmt: skip


def _item_event(kind: str, item: _Item, *, error: str | None = None) -> dict[str, Any]:
    return _event(kind, item.batch.id, item.item_id, item.spec, item.attempt, error)


def _manifest(entries: list[tuple[Spec, int]]) -> str:
    """The batch's items as stored: one JSON list of ``[spec, priority]``."""
    try:
        return json.dumps([[spec, priority] for spec, priority in entries])
    except (TypeError, ValueError) as exc:
        for spec, _ in entries:
            _dumps(spec)  # names the first spec that cannot be stored
        raise ConfigError("items", len(entries), f"not JSON-serializable: {exc}") from exc


def _batch_row(conn: Connection, batch_id: int) -> Row[Any]:
    row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
    if row is None:
        raise NotFoundError("batch", batch_id)
    return row


def _stored_rows(conn: Connection, batch_id: int) -> dict[int, dict[str, Any]]:
    """The written item rows of a batch, by item id."""
    query = select(batch_items).where(batch_items.c.batch_id == batch_id)
    return {r.item_id: r._asdict() for r in conn.execute(query)}


def _queued_row(item_id: int) -> dict[str, Any]:
    """The columns of an item that has no row yet."""
    return {"item_id": item_id, "status": QUEUED, "attempts": 0, "history": "[]",
            "result": None, "error": None, "finished_at": None}  # fmt: skip


def _stored_items(
    conn: Connection, row: Row[Any]
) -> tuple[dict[str, int], list[tuple[int, Spec, int, list[str]]]]:
    """A stored batch's finished counts and its unfinished items (with their attempts)."""
    stored = _stored_rows(conn, row.id)
    counts: dict[str, int] = {}
    unfinished = []
    for n, (spec, priority) in enumerate(json.loads(row.items), 1):
        item = stored.get(n)
        if item is not None and item["status"] in FINISHED:
            counts[item["status"]] = counts.get(item["status"], 0) + 1
            continue
        history = [] if item is None else [json.dumps(a) for a in json.loads(item["history"])]
        unfinished.append((n, spec, priority, history))
    return counts, unfinished


def _stored_counts(conn: Connection, rows: Sequence[Row[Any]]) -> dict[int, dict[str, int]]:
    """Item counts by status of stored batches; items without a finished row are queued."""
    out: dict[int, dict[str, int]] = {row.id: {} for row in rows}
    query = (
        select(batch_items.c.batch_id, batch_items.c.status, func.count())
        .where(batch_items.c.batch_id.in_(list(out)), batch_items.c.status.in_(FINISHED))
        .group_by(batch_items.c.batch_id, batch_items.c.status)
    )
    for batch_id, status, n in conn.execute(query):
        out[batch_id][status] = n
    for row in rows:
        if queued := row.total - sum(out[row.id].values()):
            out[row.id][QUEUED] = queued
    return out


def _item_record(row: Mapping[str, Any], spec: Spec, priority: int) -> ItemRecord:
    result = row["result"]
    return ItemRecord(
        item_id=row["item_id"],
        spec=spec,
        priority=priority,
        status=row["status"],
        result=json.loads(result) if result is not None else None,
        error=row["error"],
        finished_at=row["finished_at"] and as_utc(row["finished_at"]),
        attempts=tuple(_attempt_record(a) for a in json.loads(row["history"])),
    )


def _history_json(attempts: list[str]) -> str:
    return f"[{', '.join(attempts)}]"


def _attempt_json(
    attempt: int,
    started: datetime,
    duration_s: float,
    outcome: str,
    error: str | None,
    progressed: bool,
) -> str:
    """One attempt as a JSON object, written out directly: ``json.dumps`` of the
    same dict costs more than the rest of a short item's bookkeeping."""
    quoted = "null" if error is None else encode_basestring_ascii(error)
    duration = float(duration_s)
    seconds = repr(duration) if math.isfinite(duration) else json.dumps(duration)  # NaN
    return (
        f'{{"attempt": {attempt}, "started_at": "{started.isoformat()}", '
        f'"duration_s": {seconds}, "outcome": "{outcome}", "error": {quoted}, '
        f'"progressed": {"true" if progressed else "false"}}}'
    )


def _attempt_record(a: Mapping[str, Any]) -> AttemptRecord:
    started = datetime.fromisoformat(a["started_at"])
    ended = started + timedelta(seconds=a["duration_s"])
    return AttemptRecord(a["attempt"], started, ended, a["outcome"], a["error"])


__all__ = [
    "AttemptRecord",
    "BatchDetail",
    "BatchInfo",
    "BatchProgress",
    "BatchRunner",
    "ItemRecord",
    "ItemSpec",
    "SubmitResult",
    "batch_config",
    "is_transient",
    "process_memory_reader",
    "retry_delay",
]
