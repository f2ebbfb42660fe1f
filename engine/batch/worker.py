"""The worker threads' loop: take an item, run its attempts, hand back the outcome.

Each attempt gets a :class:`CancelToken`; the dispatcher cancels it at the
deadline. A retry starts only after the attempt before it returned, in the same
thread, so two attempts of one item never overlap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.batch.events import Listeners, event
from engine.batch.policy import INTERRUPTED, RETRYABLE, classify, is_fatal
from engine.batch.records import Spec, attempt_json, describe
from engine.batch.scheduler import CANCELLED, FAILED, QUEUED, SKIPPED, SUCCEEDED, Item, Scheduler
from engine.cancel import CancelToken
from engine.clock import Clock
from engine.errors import StorageError
from engine.instrument import Instrument
from engine.store.batches import ItemRow

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often deadlines and memory are checked, and backoff waits check for cancel
_SPINS = 100  # tries of a worker to take the lock without queueing on it (see _taken)

Execute = Callable[[Spec, CancelToken], Any]


@dataclass(slots=True)
class Done:
    """A worker's result for one item: a finished state, or QUEUED if interrupted."""

    item: Item
    status: str
    row: ItemRow
    error: str | None


class Workers:
    """What every worker thread runs; one instance serves them all.

    Args:
        lock: the runner's lock, guarding ``scheduler``.
        work: where idle workers wait for an item.
        changed: notified when rows are due for writing.
        give_up: called with a storage error no retry can help.
    """

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        lock: threading.Lock,
        work: threading.Condition,
        changed: threading.Condition,
        execute: Execute,
        should_skip: Callable[[Spec], bool] | None,
        clock: Clock,
        instrument: Instrument,
        listeners: Listeners,
        give_up: Callable[[StorageError], None],
    ) -> None:
        self._scheduler = scheduler
        self._lock = lock
        self._work = work
        self._changed = changed
        self._execute = execute
        self._should_skip = should_skip
        self._clock = clock
        self._instrument = instrument
        self._listeners = listeners
        self._give_up = give_up

    def loop(self) -> None:
        """A worker thread: until the runner closes."""
        done: Done | None = None
        while (item := self._take(done)) is not None:
            try:
                done = self._run_item(item)
            except Exception as exc:  # a failing should_skip must not kill the worker
                log.exception("batch %s item %s", item.batch.id, item.item_id)
                done = self._done(item, FAILED, error=describe(exc))

    def _take(self, done: Done | None) -> Item | None:
        """Count the worker's last item and pick its next one (one lock hold when busy)."""
        scheduler = self._scheduler
        token = CancelToken()  # made outside the lock, which stays short
        with _taken(self._lock):
            if done is not None and scheduler.conclude(done.item, done.row):
                self._changed.notify_all()
            item = scheduler.pick(token)
        if done is not None and done.status != QUEUED and self._listeners.active:
            self._listeners.emit([_item_event(done.status, done.item, error=done.error)])
        if item is None:
            with self._lock:
                while not scheduler.closing and (item := scheduler.pick(token)) is None:
                    self._work.wait()
        return item

    def _run_item(self, item: Item) -> Done:
        if self._should_skip is not None and self._should_skip(item.spec):
            return self._done(item, SKIPPED)
        retries = 0
        while True:
            outcome, value = self._attempt(item)
            if outcome in RETRYABLE:  # the others are final at once
                with self._lock:
                    after = self._scheduler.retry_after(item, outcome, retries)
                if after is not None:
                    retries, delay = after
                    if self._backoff(item, delay, value):
                        continue
                    outcome = item.stop or CANCELLED
            return self._conclusion(item, outcome, value)

    def _attempt(self, item: Item) -> tuple[str, Any]:
        token = item.token
        if token is None:  # a retry
            token = CancelToken()
            with self._lock:
                if not self._scheduler.rearm(item, token):
                    return item.stop or CANCELLED, None
        if item.stop is not None:
            return item.stop, None
        item.attempt += 1
        if self._listeners.active:
            self._listeners.emit([_item_event("started", item)])
        started, started_mono = self._clock.now(), self._clock.monotonic()
        try:
            with self._instrument.timed("batch.item"):
                outcome, value = SUCCEEDED, self._execute(item.spec, token)
        except Exception as exc:
            outcome, value = self._classify(item, exc), exc
        item.progressed = token.steps > 0
        error = None if outcome == SUCCEEDED else describe(value)
        duration = self._clock.monotonic() - started_mono
        record = attempt_json(item.attempt, started, duration, outcome, error, item.progressed)
        item.history.append(record)
        return outcome, value

    def _classify(self, item: Item, exc: Exception) -> str:
        if isinstance(exc, StorageError) and is_fatal(exc):
            self._give_up(exc)  # not the item's fault: it stays unfinished for a resume
        return classify(exc, stop=item.stop, timed_out=item.timed_out)

    def _backoff(self, item: Item, delay: float, error: Any) -> bool:
        """Wait ``delay`` seconds before a retry; False if the item was told to stop meanwhile."""
        with self._lock:
            if not self._scheduler.hold(item):
                return False
        self._listeners.emit([_item_event("retried", item, error=describe(error))])
        end = self._clock.monotonic() + delay
        # Short steps so that a cancel is seen soon; a fake clock just advances.
        while item.stop is None and (left := end - self._clock.monotonic()) > 0:
            self._clock.sleep(min(left, POLL_S))
        return item.stop is None

    def _conclusion(self, item: Item, outcome: str, value: Any) -> Done:
        if outcome == SUCCEEDED:
            return self._done(item, SUCCEEDED, result=value)
        if outcome == INTERRUPTED:
            return self._done(item, QUEUED)
        if outcome == CANCELLED:
            return self._done(item, CANCELLED, error="cancelled")
        return self._done(item, FAILED, error=describe(value))

    def _done(
        self, item: Item, status: str, *, result: Any = None, error: str | None = None
    ) -> Done:
        # The row is serialized here, outside the lock.
        return Done(item, status, self._scheduler.row(item, status, result, error), error)


def _item_event(kind: str, item: Item, *, error: str | None = None) -> dict[str, Any]:
    return event(kind, item.batch.id, item.item_id, item.spec, item.attempt, error)


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


__all__ = ["Done", "Execute", "Workers"]
