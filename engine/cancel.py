"""Cooperative cancellation for work running in batch-runner threads.

A :class:`CancelToken` is passed to sources and storage calls. The runner
cancels it on timeout or user cancel; long calls check it (``check()``) or wait
on it (``wait()``) so that a stopped attempt really stops.
"""

from __future__ import annotations

import threading

from .errors import BatchError, ItemCancelled, ItemTimeout


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: type[BatchError] = ItemCancelled
        self.message = ""
        self.steps = 0

    def progress(self) -> None:
        """Say a step of the work is done and durable.

        The batch runner counts retries only over attempts that made no
        progress: a district replay that failed on its twelfth check after
        eleven good ones starts its retry budget afresh.
        """
        self.steps += 1

    def cancel(self, message: str = "cancelled", *, timeout: bool = False) -> None:
        self._reason = ItemTimeout if timeout else ItemCancelled
        self.message = message
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`ItemTimeout` or :class:`ItemCancelled` if cancelled."""
        if self._event.is_set():
            raise self._reason(self.message)

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; raise at once if cancelled meanwhile."""
        if self._event.wait(max(0.0, seconds)):
            self.check()


NEVER = CancelToken()
"""A token nobody cancels, for calls made outside the batch runner."""
