"""Cooperative cancellation for work running in batch-runner threads.

A :class:`CancelToken` is passed to sources and storage calls. The runner
cancels it on timeout or user cancel; long calls check it (``check()``) or wait
on it (``wait()``) so that a stopped attempt really stops.
"""

from __future__ import annotations

import threading

from engine.errors import BatchError, ItemCancelled, ItemTimeout

# Guards the lazy creation of a token's event. Most tokens are never waited on
# (an attempt that only checks), and an Event costs more than the rest of the token.
_EVENT_LOCK = threading.Lock()


class CancelToken:
    __slots__ = ("_cancelled", "_event", "_reason", "message", "steps")

    def __init__(self) -> None:
        self._cancelled = False
        self._event: threading.Event | None = None
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
        self._cancelled = True
        with _EVENT_LOCK:  # a waiter made its event before this, or sees _cancelled
            event = self._event
        if event is not None:
            event.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        """Raise :class:`ItemTimeout` or :class:`ItemCancelled` if cancelled."""
        if self._cancelled:
            raise self._reason(self.message)

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; raise at once if cancelled meanwhile."""
        with _EVENT_LOCK:
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if self._cancelled or event.wait(max(0.0, seconds)):
            self.check()


class _Never(CancelToken):
    """Nobody cancels it, and it keeps no count: it is shared by every caller."""

    __slots__ = ()

    def progress(self) -> None:
        pass

    def cancel(self, message: str = "cancelled", *, timeout: bool = False) -> None:
        raise BatchError("the NEVER token cannot be cancelled")


NEVER: CancelToken = _Never()
"""A token nobody cancels, for calls made outside the batch runner."""
