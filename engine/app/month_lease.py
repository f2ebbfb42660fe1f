"""One process at a time works a month: the console's month leases.

:meth:`~engine.app.console.Console.start_batch` takes the lease ``month:<YYYY-MM>``
before it creates or resumes the month's jobs, and a heartbeat keeps it while the
batch runs. The lease is given up when the batch ends (finished or cancelled, its
last writes committed) or the console closes; a process that dies frees it after
``storage.lease_ttl_s``. Another process asking meanwhile is refused with
:class:`~engine.app.lease.LeaseHeld` naming the holder's host, pid and since when
(``recon run`` exits 2; the API answers 409), or waits (``recon run --wait``).

Within the process, :func:`~engine.app.months.month_batch` still refuses a second
batch of a month a batch works; the lease is shared by this console's batches of
one month and freed when the last of them ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from engine.app.lease import Lease, LeaseHeld, OnLost, wait_until_free
from engine.batch.events import Listener
from engine.clock import Clock
from engine.store.batches import BatchOwner
from engine.store.leases import Holder, LeaseRecord, Leases

MONTH_LEASE = "month:{month}"
"""Name of the lease of a month."""


class Runner(Protocol):
    """What :class:`MonthLeases` needs of the batch runner."""

    def listen(self, listener: Listener) -> Callable[[], None]: ...

    def cancel_matching(self, predicate: Callable[[Mapping[str, Any]], bool]) -> int: ...


class MonthLeases:
    """The month leases of one console. Thread-safe.

    Args:
        store: where leases are kept.
        runner: the batch runner working the months: a batch that ends gives its
            month up; a month whose lease is lost has its items cancelled.
        ttl_s: how long a month stays taken after its holder's last heartbeat.
        flush: commits the console's deferred writes; called before a lease is
            given up, so that the next holder reads everything this one did.
    """

    def __init__(
        self,
        store: Leases,
        *,
        runner: Runner,
        ttl_s: float,
        flush: Callable[[], object],
    ) -> None:
        self.ttl_s = ttl_s
        self.holder = Holder.this_process()
        self._store = store
        self._flush = flush
        self._runner = runner
        self._lock = threading.Lock()  # held across database calls: taking and freeing stay ordered
        self._held: dict[str, Lease] = {}
        self._users: dict[str, int] = {}  # batches (or starts under way) of each held month
        self._batches: dict[int, str] = {}
        self._ended: set[int] = set()  # batches that ended before they were bound
        runner.listen(self.on_event)

    def take(self, month: str) -> bool:
        """Hold ``month`` for one more batch; True when it was not held by this console
        before (what this process read of the month may be stale). LeaseHeld when
        another process holds it."""
        with self._lock:
            lease = self._held.get(month)
            fresh = lease is None or lease.lost
            if fresh:
                lease = Lease(
                    self._store,
                    MONTH_LEASE.format(month=month),
                    ttl_s=self.ttl_s,
                    holder=self.holder,
                    on_lost=self._lost_handler(month),
                )
                try:
                    lease.acquire()
                except LeaseHeld as held:  # say which month, not which lease
                    raise LeaseHeld("month", month, held.record) from None
                lease.start()
                self._held[month] = lease
            # A lost lease's batch may still be stopping: it counts until it has ended.
            self._users[month] = self._users.get(month, 0) + 1
            return fresh

    def bind(self, month: str, batch_id: int) -> None:
        """The batch that took ``month``: its end gives the month up."""
        with self._lock:
            if batch_id in self._ended:
                self._ended.discard(batch_id)
                self._drop(month)
            else:
                self._batches[batch_id] = month

    def give_up(self, month: str) -> None:
        """A start that took ``month`` submitted nothing."""
        with self._lock:
            self._drop(month)

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Batch runner listener: a batch that ended gives its month up."""
        if event.get("type") != "batch_finished":
            return
        with self._lock:
            month = self._batches.pop(event["batch_id"], None)
            if month is None:
                self._ended.add(event["batch_id"])
            else:
                self._drop(month)

    def lost(self, month: str) -> bool:
        """Whether this console's lease of ``month`` was taken by another process."""
        with self._lock:
            lease = self._held.get(month)
        return lease is not None and lease.lost

    def owner(self, month: str) -> BatchOwner | None:
        """The lease this console holds for ``month`` (None: none), for its batches."""
        with self._lock:
            lease = self._held.get(month)
        return None if lease is None else BatchOwner(lease.name, lease.holder.id)

    def held_by(self, month: str) -> LeaseRecord | None:
        """Who works ``month`` now, in any process (None: nobody)."""
        return self._store.holder(MONTH_LEASE.format(month=month))

    def tick(self) -> None:
        """One heartbeat of every held month now (the threads beat every ttl/3)."""
        with self._lock:
            held = list(self._held.values())
        for lease in held:
            lease.tick()

    def wait(self, month: str, *, clock: Clock, on_wait: Callable[[LeaseRecord], None]) -> None:
        """Return once no process holds ``month``; ``on_wait`` hears of each holder seen."""
        poll_s = min(1.0, self.ttl_s / 3)
        name = MONTH_LEASE.format(month=month)
        wait_until_free(self._store, name, clock=clock, poll_s=poll_s, on_wait=on_wait)

    def close(self) -> None:
        """Give every month up (the console closes; its batches were interrupted).

        When the last writes cannot be committed the leases are left to expire,
        as a crash would leave them, rather than handed on at once."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
            self._users.clear()
            self._batches.clear()
            flushed = False
            try:
                if held:
                    self._flush()
                flushed = True
            finally:
                for lease in held:
                    if flushed:
                        lease.release()
                    else:
                        lease.stop()

    def _drop(self, month: str) -> None:
        """One user less; the last one commits this console's writes and frees the
        lease (lock held). If the commit fails the month stays held until close."""
        if self._users[month] == 1:
            self._flush()
            del self._users[month]
            self._held.pop(month).release()
        else:
            self._users[month] -= 1

    def _lost_handler(self, month: str) -> OnLost:
        def lost(_: LeaseRecord | None) -> None:
            # This process stalled past the ttl and another took the month: stop working it.
            self._runner.cancel_matching(lambda spec: spec.get("month") == month)

        return lost


__all__ = ["MONTH_LEASE", "MonthLeases"]
