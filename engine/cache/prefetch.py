"""Prefetching: a hot job's related entries loaded on one background thread."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

PREFETCH_QUEUE = 32  # pending prefetches; more are dropped, so storage is never flooded

log = logging.getLogger(__name__)


class PrefetchWorker:
    """Runs the prefetcher on one background thread from a bounded queue.

    A burst of hot jobs cannot flood storage: a request finding the queue full
    is dropped and counted, and a job already waiting is not queued twice.
    """

    def __init__(self, fn: Callable[[int], None], local: threading.local) -> None:
        self._fn = fn
        self._local = local
        self._queue: queue.Queue[int | None] = queue.Queue(PREFETCH_QUEUE)
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        self.errors = 0

    def submit(self, job_id: int) -> None:
        with self._lock:
            if self._closed or job_id in self._pending:
                return
            try:
                self._queue.put_nowait(job_id)
            except queue.Full:
                self.dropped += 1
                return
            self._pending.add(job_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="cache-prefetch", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        self._local.prefetching = True  # what this thread writes counts as prefetched
        while (job_id := self._queue.get()) is not None:
            try:
                self._fn(job_id)
            except Exception:
                with self._lock:
                    self.errors += 1
                log.warning("prefetch of job %s failed", job_id, exc_info=True)
            finally:
                with self._lock:
                    self._pending.discard(job_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            while not self._queue.empty():  # pending prefetches are not worth waiting for
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        if thread is not None:
            thread.join()
