"""Write policies: when a write reaches the database.

- :class:`Immediate` (naive mode, the "before"): every write is its own committed
  transaction.
- :class:`Deferred` (optimized mode): writes are queued, coalesced by key and
  written in one transaction by a flusher thread when ``batch_size`` are pending
  (by the writer itself past :data:`INLINE_FLUSH_FACTOR` times that), after
  ``max_delay_ms``, on :meth:`~Deferred.flush` and on :meth:`~Deferred.close`.
  A failed flush keeps its writes queued (newer queued values win): nothing is
  dropped. Readers see queued writes through :meth:`~WritePolicy.queued`.

The composition root chooses one; the stores built on it never ask which.
Writes are of a :class:`Kind` (a keyed, coalescing write with its statement) or
plain inserts (:meth:`~WritePolicy.defer`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Table, insert

from engine.clock import Clock, SystemClock
from engine.errors import StorageError
from engine.store.database import Database

INLINE_FLUSH_FACTOR = 16  # see Deferred._size_trigger


class Kind:
    """A kind of keyed write: queued values of one key coalesce (the newest wins,
    or the one ``replaces(old, new)`` prefers).

    Args:
        operation: the timed operation of an immediate write of this kind.
        order: kinds are written in this order in a flush.
        write: writes values of this kind in a transaction.
        replaces: whether ``new`` replaces a queued ``old`` of the same key.
    """

    def __init__(
        self,
        operation: str,
        *,
        order: int,
        write: Callable[[Connection, list[Any]], None],
        replaces: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        self.operation = operation
        self.order = order
        self.write = write
        self.replaces = replaces


Write = tuple[Kind, Hashable, Any]
"""One keyed write: its kind, its key and its value."""


class WritePolicy(Protocol):
    """When writes reach the database (see the module's docstring)."""

    def put(self, writes: Sequence[Write]) -> None:
        """Write (or queue) keyed writes, in order."""
        ...

    def defer(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (or queue them for the next flush)."""
        ...

    def commit(
        self, operation: str, then: Callable[[Connection], None], forget: Write | None = None
    ) -> None:
        """Write everything queued, then ``then(conn)``, in one committed transaction;
        then drop ``forget``'s key from what was queued meanwhile."""
        ...

    def flush(self) -> int:
        """Write everything queued in one transaction; return how many writes."""
        ...

    def pending(self) -> int:
        """Writes not committed yet (queued, or in a flush under way)."""
        ...

    def queued(self, kind: Kind) -> dict[Hashable, Any]:
        """Uncommitted values of ``kind`` by key (the newest of a key)."""
        ...

    def queued_value(self, kind: Kind, key: Hashable) -> Any | None:
        """The uncommitted value of ``key``, or None."""
        ...

    def listen(self, committed: Callable[[Queue], None]) -> None:
        """Call ``committed(writes)`` after a flush commits and before readers stop
        seeing its writes as queued."""
        ...

    def close(self) -> None:
        """Write what is queued and stop."""
        ...


class Queue:
    """Writes waiting for a flush: keyed values by kind, and plain inserts."""

    def __init__(self) -> None:
        self.keyed: dict[Kind, dict[Hashable, Any]] = {}
        self.inserts: list[tuple[Table, dict[str, Any]]] = []

    def __len__(self) -> int:
        n = len(self.inserts)
        for values in self.keyed.values():
            n += len(values)
        return n

    def values(self, kind: Kind) -> dict[Hashable, Any]:
        return self.keyed.get(kind, {})

    def put(self, writes: Iterable[Write]) -> None:
        keyed = self.keyed
        for kind, key, value in writes:
            values = keyed.get(kind)
            if values is None:
                values = keyed[kind] = {}
            replaces = kind.replaces
            if replaces is None or (old := values.get(key)) is None or replaces(old, value):
                values[key] = value

    def write(self, conn: Connection) -> None:
        for kind in sorted(self.keyed, key=lambda k: k.order):
            if self.keyed[kind]:
                kind.write(conn, list(self.keyed[kind].values()))
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for table, row in self.inserts:
            by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            conn.execute(insert(table), rows)

    def merged_with(self, newer: Queue) -> Queue:
        """This (failed) batch with ``newer`` writes on top."""
        for kind, values in newer.keyed.items():
            self.put((kind, key, value) for key, value in values.items())
        self.inserts.extend(newer.inserts)
        return self


class Immediate:
    """Every write is its own committed transaction (naive mode)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def put(self, writes: Sequence[Write]) -> None:
        for kind, _, value in writes:
            with self._database.transaction(kind.operation) as conn:
                kind.write(conn, [value])

    def defer(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        self._database.write(table, rows)

    def commit(
        self, operation: str, then: Callable[[Connection], None], forget: Write | None = None
    ) -> None:
        with self._database.transaction(operation) as conn:
            then(conn)

    def flush(self) -> int:
        return 0

    def pending(self) -> int:
        return 0

    def queued(self, kind: Kind) -> dict[Hashable, Any]:
        return {}

    def queued_value(self, kind: Kind, key: Hashable) -> Any | None:
        return None

    def listen(self, committed: Callable[[Queue], None]) -> None:
        """Nothing is ever queued: nothing is committed later."""

    def close(self) -> None:
        """Nothing is queued."""


class Deferred:
    """Queued, coalesced writes flushed in one transaction (optimized mode).

    Args:
        database: where flushes write.
        batch_size: the flusher writes when this many writes are queued.
        max_delay_ms: ... or when the oldest queued write waited this long.
        clock: for the delay.
    """

    def __init__(
        self,
        database: Database,
        *,
        batch_size: int,
        max_delay_ms: int,
        clock: Clock | None = None,
    ) -> None:
        self._database = database
        self._batch_size = batch_size
        self._delay_s = max_delay_ms / 1000
        self._clock = clock or SystemClock()
        self._pending_lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._pending = Queue()
        self._flushing = Queue()  # taken from _pending, being written: still visible
        self._oldest_pending: float | None = None
        self._listeners: list[Callable[[Queue], None]] = []
        self._closed = threading.Event()
        self._wake = threading.Event()  # the size trigger fired: the flusher writes now
        self._flusher = threading.Thread(
            target=self._flush_loop, name="storage-flusher", daemon=True
        )
        self._flusher.start()

    # --- queueing --------------------------------------------------------------------------

    def put(self, writes: Sequence[Write]) -> None:
        with self._pending_lock:
            self._pending.put(writes)
            pending = self._note_pending()
        self._size_trigger(pending)

    def defer(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        with self._pending_lock:
            self._pending.inserts.extend((table, dict(r)) for r in rows)
            pending = self._note_pending()
        self._size_trigger(pending)

    def pending(self) -> int:
        with self._pending_lock:
            return len(self._pending) + len(self._flushing)

    def queued(self, kind: Kind) -> dict[Hashable, Any]:
        with self._pending_lock:
            flushing, pending = self._flushing.keyed.get(kind), self._pending.keyed.get(kind)
            if not flushing:
                return dict(pending) if pending else {}
            return {**flushing, **pending} if pending else dict(flushing)  # newer wins

    def queued_value(self, kind: Kind, key: Hashable) -> Any | None:
        with self._pending_lock:
            for queue in (self._pending, self._flushing):
                values = queue.keyed.get(kind)
                if values and key in values:
                    return values[key]
        return None

    def listen(self, committed: Callable[[Queue], None]) -> None:
        self._listeners.append(committed)

    # --- writing ---------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything queued in one transaction; return how many writes.

        On failure the writes stay queued (newer queued values win) and the
        error is raised.
        """
        return self._write_queued("flush")

    def commit(
        self, operation: str, then: Callable[[Connection], None], forget: Write | None = None
    ) -> None:
        self._write_queued(operation, then)
        if forget is not None:
            kind, key, _ = forget
            with self._pending_lock:
                self._pending.values(kind).pop(key, None)

    def _write_queued(
        self, operation: str, then: Callable[[Connection], None] | None = None
    ) -> int:
        with self._flush_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, Queue()
                self._flushing = batch  # readers overlay it until it is committed
                self._oldest_pending = None
            if not batch and then is None:
                return 0
            try:
                with self._database.transaction(operation) as conn:
                    batch.write(conn)
                    if then is not None:
                        then(conn)
            except StorageError:
                with self._pending_lock:
                    self._pending = batch.merged_with(self._pending)
                    self._flushing = Queue()
                    self._oldest_pending = self._clock.monotonic()
                raise
            for committed in self._listeners:  # drop what readers cached of old values
                committed(batch)
            with self._pending_lock:
                self._flushing = Queue()
            return len(batch)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        self._flusher.join(timeout=5)
        self.flush()

    # --- triggers --------------------------------------------------------------------------

    def _note_pending(self) -> int:
        """Start the maximum-delay clock; how many writes are queued (pending lock held)."""
        if self._oldest_pending is None:
            self._oldest_pending = self._clock.monotonic()
        return len(self._pending)

    def _size_trigger(self, pending: int) -> None:
        """At ``batch_size`` queued writes the flusher thread writes them, so that the
        caller does not wait for the commit. Past :data:`INLINE_FLUSH_FACTOR` times that
        (the flusher is behind, or the database fails), the caller flushes itself: it
        waits, and it gets the error. The margin lets a writer that keeps the interpreter
        busy go on queueing while the flusher's SQLite work, which releases the
        interpreter lock, runs beside it: a writing loop got to four times the batch size
        before the flusher started, and at four times it waited for every flush."""
        if pending >= INLINE_FLUSH_FACTOR * self._batch_size:
            self.flush()
        elif pending >= self._batch_size and not self._wake.is_set():
            self._wake.set()  # (set() alone costs a lock and a notify at every write)

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(min(self._delay_s, 0.05))
            self._wake.clear()  # a trigger after this is seen by the size check below
            with self._pending_lock:
                oldest, pending = self._oldest_pending, len(self._pending)
            late = oldest is not None and self._clock.monotonic() - oldest >= self._delay_s
            if not self._closed.is_set() and (late or pending >= self._batch_size):
                with contextlib.suppress(StorageError):  # kept queued; retried next tick
                    self.flush()

    def flushing(self) -> bool:
        """Whether a flush is under way (for tests that catch one in the act)."""
        return self._flush_lock.locked()


__all__ = ["INLINE_FLUSH_FACTOR", "Deferred", "Immediate", "Kind", "Queue", "Write", "WritePolicy"]
