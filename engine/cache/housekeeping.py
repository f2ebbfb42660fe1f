"""The cache's background thread: expired entries removed and history sampled on schedule."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

SAMPLE_INTERVAL_S = 5.0  # history() gets one sample this often
_POLL_S = 0.5  # the background thread looks at the clock this often

log = logging.getLogger(__name__)


class Housekeeper:
    """Calls ``cleanup`` every ``cleanup_s`` and ``sample`` every :data:`SAMPLE_INTERVAL_S`.

    Both run on one daemon thread between :meth:`start` and :meth:`stop`;
    ``timer`` (the cache's monotonic clock) says when they are due.
    """

    def __init__(
        self,
        *,
        cleanup: Callable[[], object],
        sample: Callable[[], object],
        cleanup_s: float,
        timer: Callable[[], float],
    ) -> None:
        self._cleanup = cleanup
        self._sample = sample
        self._cleanup_s = cleanup_s
        self._now = timer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread, unless it runs."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cache-cleanup", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; :meth:`start` may start it again."""
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        now = self._now()
        next_cleanup = now + self._cleanup_s
        next_sample = now + SAMPLE_INTERVAL_S
        while not self._stop.wait(_POLL_S):
            now = self._now()
            try:
                if now >= next_cleanup:
                    next_cleanup = now + self._cleanup_s
                    self._cleanup()
                if now >= next_sample:
                    next_sample = now + SAMPLE_INTERVAL_S
                    self._sample()
            except Exception:  # keep cleaning up even if an on_sample hook fails
                log.exception("cache background task failed")
