"""Events of the batch runner, and the listeners they go to.

An event is a dict: ``{"type": ..., "batch_id": ..., "item_id": ..., "spec": ...,
"attempt": ..., "error": ...}`` with type ``started``, ``retried``, ``succeeded``,
``failed``, ``skipped``, ``cancelled`` or ``batch_finished`` (which adds ``status``).
Listeners run in the runner's threads and must be quick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Listener = Callable[[Event], None]


def event(
    kind: str,
    batch_id: int,
    item_id: int | None = None,
    spec: Mapping[str, Any] | None = None,
    attempt: int = 0,
    error: str | None = None,
) -> Event:
    return {"type": kind, "batch_id": batch_id, "item_id": item_id, "spec": spec,
            "attempt": attempt, "error": error}  # fmt: skip


class Listeners:
    """The runner's listeners; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: tuple[Listener, ...] = ()
        """Read without the lock: senders skip building events nobody listens to."""

    def add(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event; returns a function that unsubscribes."""
        with self._lock:
            self.active = (*self.active, listener)

        def unsubscribe() -> None:
            with self._lock:
                self.active = tuple(f for f in self.active if f is not listener)

        return unsubscribe

    def emit(self, events: list[Event]) -> None:
        """Send ``events`` to every listener; a failing listener is logged, not raised."""
        for sent in events:
            for listener in self.active:
                try:
                    listener(sent)
                except Exception:
                    log.exception("batch listener %r failed on %s", listener, sent["type"])


__all__ = ["Event", "Listener", "Listeners", "event"]
