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

The parts: :mod:`~engine.batch.scheduler` decides (order, limits, retries,
throttling, timeouts, writes due), :mod:`~engine.batch.policy` classifies errors,
:mod:`~engine.batch.memory` gates on memory, :mod:`~engine.batch.worker` runs
items, :mod:`~engine.batch.records` is what comes out, and
:class:`~engine.store.batches.BatchStore` records it. Events: see
:mod:`~engine.batch.events`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.batch.config import batch_config, within_runner
from engine.batch.events import Listener, Listeners
from engine.batch.history import History, Outcome
from engine.batch.memory import MemoryGate, MemoryReader, process_memory_reader
from engine.batch.policy import INTERRUPTED
from engine.batch.records import (
    FINISHED,
    AttemptRecord,
    BatchDetail,
    BatchInfo,
    BatchProgress,
    ItemRecord,
    ItemSpec,
    Spec,
    SubmitResult,
    entry,
    new_batch,
)
from engine.batch.scheduler import CANCELLED, QUEUED, Scheduler
from engine.batch.worker import POLL_S, Execute, Workers
from engine.batch.writer import Writer
from engine.clock import Clock, SystemClock
from engine.errors import BatchError, ConfigError, NotFoundError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.settings import BatchSettings
from engine.store.batches import BatchOwner, BatchStore, ItemRow

log = logging.getLogger(__name__)

_CLOSE_GRACE_S = 10.0  # close() waits this long for attempts that ignore their token


class BatchRunner:
    """Runs submitted batches; thread-safe. See the module docstring.

    Args:
        settings: defaults of every batch; ``max_concurrent_jobs`` is the global limit.
        store: where batches, items and attempts are recorded.
        execute: does one item; gets the spec and the attempt's cancel token.
        should_skip: says an item's job is already completed (it is then skipped).
        outcome: how an item's work ended elsewhere (for :meth:`resume`, :meth:`take_over`).
        clock: time for records, timeouts, backoff and throttling (tests: FakeClock).
        memory_reader: resident memory in MB (default: psutil, this process).
        instrument: ``timed("batch.item")`` wraps each attempt, ``timed("batch.run")`` run().
        rng: source of retry jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        settings: BatchSettings,
        *,
        store: BatchStore,
        execute: Execute,
        should_skip: Callable[[Spec], bool] | None = None,
        outcome: Outcome | None = None,
        clock: Clock | None = None,
        memory_reader: MemoryReader | None = None,
        instrument: Instrument = NO_INSTRUMENT,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings  # replaced whole by reconfigure(), under the lock
        self._store = store
        self._clock = clock or SystemClock()
        self._instrument = instrument
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers wait here for an item
        self._changed = threading.Condition(self._lock)  # the dispatcher and run() wait here
        self._gate = MemoryGate(
            memory_reader or process_memory_reader(), clock=self._clock, poll_s=POLL_S
        )
        self._scheduler = Scheduler(
            limit=settings.max_concurrent_jobs, clock=self._clock, gate=self._gate,
            rng=rng or random.Random(),
        )  # fmt: skip
        self._listeners = Listeners()
        self._history = History(store, _LiveView(self._scheduler, self._lock), outcome)
        self._writer = Writer(
            store=store, scheduler=self._scheduler, lock=self._lock, work=self._work,
            changed=self._changed, clock=self._clock, listeners=self._listeners,
            retry_wait_s=POLL_S,
        )  # fmt: skip
        self._workers = Workers(
            scheduler=self._scheduler, lock=self._lock, work=self._work, changed=self._changed,
            execute=execute, should_skip=should_skip, clock=self._clock, instrument=instrument,
            listeners=self._listeners, give_up=self._writer.give_up,
        )  # fmt: skip
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None
        self._dispatching = False  # run() or the background thread dispatches
        self._background = False  # start() was called

    # --- submitting and controlling ---------------------------------------------------

    def submit(
        self,
        items: Sequence[ItemSpec | tuple[Spec, int] | Spec],
        *,
        config: Mapping[str, Any] | None = None,
        name: str = "",
        owner: BatchOwner | None = None,
    ) -> SubmitResult:
        """Record a batch and queue its items; ``config`` (seed or field names) is clamped.
        ``owner``: the lease held while it runs (:meth:`History.end_abandoned`)."""
        runner = self.settings  # one read: reconfigure() may replace it
        settings, notes = batch_config(runner, config)
        settings, limited = within_runner(settings, runner)
        entries = [entry(item) for item in items]
        if not entries:
            raise ConfigError("items", [], "a batch needs at least one item")
        self._check_open()
        batch_id = self._store.create(new_batch(name, settings, entries, self._clock.now(), owner))
        with self._lock:
            rows = [(n, spec, prio, list[str]()) for n, (spec, prio) in enumerate(entries, 1)]
            self._add(batch_id, name, settings, {}, rows)
        return SubmitResult(batch_id, settings, notes + limited)

    def reconfigure(self, settings: BatchSettings) -> None:
        """New defaults and process-wide limit for the batches submitted from now on."""
        with self._lock:
            self.settings = settings
            self._scheduler.limit = settings.max_concurrent_jobs
            if self._threads:
                _top_up(self._threads, self._workers.loop, settings.max_concurrent_jobs)

    def cancel(self, batch_id: int) -> None:
        """Cancel a batch: queued items are dropped at once, running ones are stopped.
        A batch left unfinished by another (dead) process is cancelled in the database."""
        with self._lock:
            # A closed (or failed) runner no longer writes: cancel in the database.
            stopped = self._scheduler.closing or self._writer.fatal is not None
            batch = None if stopped else self._scheduler.open.get(batch_id)
            events = self._scheduler.cancel(batch) if batch is not None else []
        if batch is None:
            events = self._history.cancel(batch_id, self._clock.now())
        else:
            self._store.mark_cancelled(batch_id)
        self._listeners.emit(events)

    def cancel_item(self, batch_id: int, item_id: int) -> bool:
        """Cancel one item; False if it already finished."""
        with self._lock:
            self._check_open_locked()
            batch = self._scheduler.batches.get(batch_id)
            if batch is None:
                raise NotFoundError("batch", batch_id, "no such batch in this process")
            item = batch.live.get(item_id)
            if item is None:
                return False
            events = self._scheduler.drop([item]) if item.status == QUEUED else []
            self._scheduler.stop(item, CANCELLED)
        self._listeners.emit(events)
        return True

    def cancel_matching(self, predicate: Callable[[Spec], bool]) -> int:
        """Cancel every unfinished item of this process whose spec matches; return how many."""
        with self._lock:
            found = [
                (batch.id, item.item_id)
                for batch in self._scheduler.open.values()
                for item in batch.live.values()
                if predicate(item.spec)
            ]
        return sum(self.cancel_item(batch_id, item_id) for batch_id, item_id in found)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event; returns a function that unsubscribes."""
        return self._listeners.add(listener)

    def resume(self) -> list[int]:
        """Continue the batches a previous process left unfinished; return their ids.

        Items recorded as finished, or whose work ended (``outcome``), never run again;
        the others (also those running when the process died) queue in their first order.
        """
        self._check_open()  # first: a closed runner reopens nothing it will not run
        loaded = self._history.unfinished(now=self._clock.now(), reopen=True)
        resumed = []
        with self._lock:
            self._check_open_locked()
            for stored, counts, items in loaded:
                if stored.id not in self._scheduler.batches:
                    settings = BatchSettings(**json.loads(stored.config))
                    self._add(stored.id, stored.name, settings, counts, items)
                    resumed.append(stored.id)
        return resumed

    def take_over(self, name: str, *, by: int) -> list[int]:
        """End as taken over by batch ``by`` the batches named ``name`` a stopped process
        left (:meth:`History.take_over`); only while no other process can run one."""
        return self._history.take_over(name, by=by, now=self._clock.now())

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the dispatcher in a background thread until :meth:`close` (dashboard, API)."""
        with self._lock:
            self._check_open_locked()
            _top_up(self._threads, self._workers.loop, self.settings.max_concurrent_jobs)
            self._background = True
            if self._dispatching:
                return  # run() dispatches now; it hands over to the background when it returns
            self._dispatching = True
        self._spawn_dispatcher()

    def run(self, *, until_idle: bool = True) -> None:
        """Dispatch in the calling thread; return when every batch is finished.

        With ``until_idle=False`` it returns only after :meth:`close`. If the
        dispatcher already runs (``start()``), this waits for the same moment.
        """
        with self._instrument.timed("batch.run"):
            with self._lock:
                _top_up(self._threads, self._workers.loop, self.settings.max_concurrent_jobs)
                dispatch = not self._dispatching
                self._dispatching = True
                while (
                    not dispatch
                    and not self._scheduler.closing
                    and (self._scheduler.open or not until_idle)
                ):
                    self._changed.wait()
            if dispatch:
                self._dispatch(until_idle)

    def close(self) -> None:
        """Stop every thread and write everything. Running items are interrupted, not
        cancelled: they stay unfinished and run again after :meth:`resume`."""
        with self._lock:
            if self._scheduler.closing:
                return
            self._scheduler.halt(closing=True)
            self._scheduler.stop_all(INTERRUPTED)
            self._work.notify_all()
            self._changed.notify_all()
        for thread in [*self._threads, self._dispatcher]:
            if thread is not None:
                thread.join(_CLOSE_GRACE_S)
        with self._lock:
            work = self._scheduler.collect(everything=True)
        self._writer.persist(work)

    # --- reading ----------------------------------------------------------------------

    def progress(self, batch_id: int) -> BatchProgress:
        """The batch's counters, throughput and ETA now (batches of this process)."""
        with self._lock:
            progress = self._scheduler.progress(batch_id)
        if progress is None:
            raise NotFoundError("batch", batch_id, "no such batch in this process")
        return progress

    def queue_depth(self) -> int:
        """Items waiting to start, over every batch."""
        with self._lock:
            return self._scheduler.queue_depth()

    def running_count(self) -> int:
        """Items inside an attempt or waiting to retry, over every batch."""
        with self._lock:
            return self._scheduler.running_count()

    def list_batches(self, limit: int = 100) -> list[BatchInfo]:
        """The latest batches from the database (live counters for this process's batches)."""
        return self._history.list_batches(limit, now=self._clock.now())

    def batch_detail(self, batch_id: int) -> BatchDetail:
        """A batch with every item and its attempts (what is not written yet included)."""
        return self._history.batch_detail(batch_id, now=self._clock.now())

    # --- threads and writes -------------------------------------------------------------

    def _spawn_dispatcher(self) -> None:
        self._dispatcher = threading.Thread(
            target=self._dispatch, args=(False,), name="batch-dispatcher", daemon=True
        )
        self._dispatcher.start()

    def _dispatch(self, until_idle: bool) -> None:
        """Watch deadlines and memory and write results until idle (or closed)."""
        try:
            while self._tick(until_idle):
                pass
        finally:
            with self._lock:
                closing = self._scheduler.closing
                handover = self._background and self._dispatcher is None and not closing
                self._dispatching = handover
                self._changed.notify_all()
            if handover:
                self._spawn_dispatcher()

    def _tick(self, until_idle: bool) -> bool:
        """One round of the dispatcher; False when it is done."""
        if self._writer.fatal is not None:
            raise self._writer.fatal
        scheduler = self._scheduler
        self._gate.refresh(throttling=scheduler.throttling)
        for batch_id in self._history.cancelled_elsewhere():
            self.cancel(batch_id)  # its queued items dropped, running ones stopped, here too
        with self._lock:
            if scheduler.watch():
                self._work.notify_all()
            work = scheduler.collect()
            if not work:
                if scheduler.closing or (until_idle and not scheduler.open):
                    return False
                self._changed.wait(POLL_S if scheduler.open else None)
                return True
        self._writer.persist(work)
        return True

    def _add(
        self,
        batch_id: int,
        name: str,
        settings: BatchSettings,
        counts: Mapping[str, int],
        items: list[tuple[int, Spec, int, list[str]]],
    ) -> None:
        """Queue a batch's items and wake the threads (lock held)."""
        self._scheduler.add(batch_id, name, settings, counts, items)
        self._work.notify_all()
        self._changed.notify_all()

    def _check_open(self) -> None:
        with self._lock:
            self._check_open_locked()

    def _check_open_locked(self) -> None:
        if self._scheduler.closing:
            raise BatchError("the batch runner is closed")


def _top_up(threads: list[threading.Thread], loop: Callable[[], None], count: int) -> None:
    """Start worker threads until ``count`` run (a higher limit adds some)."""
    for n in range(len(threads), count):
        threads.append(threading.Thread(target=loop, name=f"batch-worker-{n}", daemon=True))
        threads[-1].start()


class _LiveView:
    """The scheduler's live rows and counts, read under the runner's lock."""

    def __init__(self, scheduler: Scheduler, lock: threading.Lock) -> None:
        self._scheduler = scheduler
        self._lock = lock

    def live_rows(self, batch_id: int) -> dict[int, ItemRow]:
        with self._lock:
            return self._scheduler.live_rows(batch_id)

    def live_counts(self, batch_id: int) -> tuple[dict[str, int], float] | None:
        with self._lock:
            return self._scheduler.live_counts(batch_id)

    def known(self) -> set[int]:
        with self._lock:
            return set(self._scheduler.batches)

    def uncancelled(self) -> set[int]:
        with self._lock:
            return {b.id for b in self._scheduler.open.values() if not b.cancelled}


__all__ = [
    "FINISHED",
    "AttemptRecord",
    "BatchDetail",
    "BatchInfo",
    "BatchProgress",
    "BatchRunner",
    "ItemRecord",
    "ItemSpec",
    "SubmitResult",
]
