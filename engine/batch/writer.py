"""Writing the runner's results, and what happens when the database refuses them."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from engine.batch.events import Listeners, event
from engine.batch.policy import INTERRUPTED, is_fatal
from engine.batch.scheduler import Flush, Scheduler
from engine.clock import Clock
from engine.domain.models import BatchStatus
from engine.errors import StorageError
from engine.store.batches import BatchEnd, BatchStore

log = logging.getLogger(__name__)


class Writer:
    """Writes the rows the scheduler hands out, one transaction per call.

    A transient failure keeps the rows for the next try; a fatal one (see
    :func:`~engine.batch.policy.is_fatal`) stops the runner: nothing more starts,
    what runs is interrupted and stays unfinished in the database, so ``recon run``
    or a resume continues it once the fault is gone. ``fatal`` is then the error.
    """

    def __init__(
        self,
        *,
        store: BatchStore,
        scheduler: Scheduler,
        lock: threading.Lock,
        work: threading.Condition,
        changed: threading.Condition,
        clock: Clock,
        listeners: Listeners,
        retry_wait_s: float,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._lock = lock
        self._work = work
        self._changed = changed
        self._clock = clock
        self._listeners = listeners
        self._retry_wait_s = retry_wait_s
        self.fatal: StorageError | None = None

    def persist(self, work: list[Flush]) -> None:
        """Write in one transaction; on failure keep the rows for the next try."""
        if not work:
            return
        now = self._clock.now()
        rows = [row for flush in work for row in flush.items]
        ends = [_end(f, now) for f in work if f.final]
        try:
            self._store.save(rows, ends)
        except Exception as exc:
            with self._lock:
                self._scheduler.written(work, ok=False)
            if isinstance(exc, StorageError) and is_fatal(exc):
                self.give_up(exc)
                return
            log.warning("batch runner: writing results failed, retrying: %s", exc)
            with self._lock:
                self._changed.wait(self._retry_wait_s)
            return
        with self._lock:
            ended = self._scheduler.written(work, ok=True)
            self._changed.notify_all()
        self._listeners.emit(
            [event("batch_finished", b.id) | {"status": _status(b.cancelled)} for b in ended]
        )

    def give_up(self, exc: StorageError) -> None:
        """The database refuses writes: start nothing more and interrupt what runs."""
        with self._lock:
            if self.fatal is None:
                self.fatal = exc
                self._scheduler.halt()
                self._scheduler.stop_all(INTERRUPTED)
            self._work.notify_all()
            self._changed.notify_all()


def _end(flush: Flush, now: datetime) -> BatchEnd:
    b = flush.batch
    return BatchEnd(b.id, _status(b.cancelled), now, b.throttled_s)


def _status(cancelled: bool) -> BatchStatus:
    return BatchStatus.CANCELLED if cancelled else BatchStatus.FINISHED


__all__ = ["Writer"]
