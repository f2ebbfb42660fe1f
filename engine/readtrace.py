"""The recent reads of one cache, kept so the what-if tuner can replay the real work.

Each cache of the process (the read cache's layers, the storage cache, the
source's day summaries and row memo) records its reads in a :class:`ReadTrace`:
a ring buffer of the last :data:`TRACE_KEYS` events, each ``(op, key, time,
origin)``. ``op`` is ``g`` (a read), ``s`` (a write), ``i`` (an invalidation) or
``c`` (the cache was cleared); ``origin`` is who read: :data:`WORK` for the
engine's own work, else the :func:`~engine.instrument.reads_for` label
(``dashboard``, ``api``, ``viewers``, ``prefetch``). Appending is one
``deque.append`` (atomic): the hot path takes no lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

from engine.instrument import ORIGIN

__all__ = ["TRACE_KEYS", "WORK", "Event", "ReadTrace"]

TRACE_KEYS = 20_000  # events kept per cache
WORK = "work"  # the origin of reads made by the engine's own work (no reads_for label)

Event = tuple[str, Hashable, float, str]


class ReadTrace:
    """The last ``maxlen`` reads, writes and invalidations of one cache. Thread-safe."""

    def __init__(
        self, maxlen: int = TRACE_KEYS, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._append = self._events.append
        self._origin = ORIGIN.get
        self._timer = timer
        self.maxlen = maxlen

    def read(self, key: Hashable) -> None:
        self._append(("g", key, self._timer(), self._origin() or WORK))

    def read_at(self, key: Hashable, at: float) -> None:
        """A read at ``at`` (the caller's clock reading): the cache layers' hot path."""
        self._append(("g", key, at, self._origin() or WORK))

    def add(self, op: str, key: Hashable, at: float | None = None) -> None:
        """Record a write (``s``), an invalidation (``i``) or a clear (``c``, key None)."""
        when = self._timer() if at is None else at
        self._events.append((op, key, when, ORIGIN.get() or WORK))

    def events(self, origin: str | None = None) -> list[tuple[str, Hashable, float]]:
        """``(op, key, time)`` oldest first; with ``origin``, only that origin's reads
        (and every write, invalidation and clear, whoever made them)."""
        found = self._events.copy()  # one C call: safe while other threads append
        return [(op, key, at) for op, key, at, who in found if origin in (None, who) or op != "g"]

    def origins(self) -> dict[str, int]:
        """Reads per origin in the trace."""
        counts: dict[str, int] = {}
        for op, _, _, who in self._events.copy():
            if op == "g":
                counts[who] = counts.get(who, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self._events)
