"""A lease this process holds, kept alive by a heartbeat thread.

The database keeps who holds a named lease until when (:mod:`engine.store.leases`);
:class:`Lease` is one holder's side of it::

    lease = Lease(store, "month:2025-06", ttl_s=30, on_lost=report)
    lease.acquire()    # LeaseHeld, naming the holder, when another process has it
    lease.start()      # renew every ttl/3 on a daemon thread
    ...
    lease.release()    # stop the heartbeat and free it for the others

A process that dies without releasing frees its leases once their ttl has passed,
or at once for a claimant on the same host, which can see that the holder's
process is gone.
A heartbeat that finds the lease gone (the process stalled past its ttl and
another took it) stops and calls ``on_lost`` once, with the new holder: the
owner must then stop the work the lease guarded. :meth:`Lease.tick` is one
heartbeat, so tests drive it with a :class:`~engine.clock.FakeClock`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psutil

from engine.clock import Clock, SystemClock
from engine.errors import ConflictError, StorageError
from engine.store.leases import Holder, LeaseRecord, Leases

log = logging.getLogger(__name__)

OnLost = Callable[[LeaseRecord | None], None]
"""Called once when a heartbeat finds the lease lost, with who holds it now (if anyone)."""


class LeaseHeld(ConflictError):
    """Another holder has the lease; ``record`` says who, where and since when."""

    def __init__(self, field: str, value: object, record: LeaseRecord) -> None:
        self.record = record
        super().__init__(field, value, f"worked by {record.describe()}")


class Lease:
    """One named lease held by this process. Thread-safe.

    Args:
        store: where leases are kept.
        name: the lease, e.g. ``month:2025-06``.
        ttl_s: how long the lease outlives its holder's last heartbeat.
        holder: who claims it (default: a new holder in this process).
        on_lost: see :data:`OnLost` (default: log only).
    """

    def __init__(
        self,
        store: Leases,
        name: str,
        *,
        ttl_s: float,
        holder: Holder | None = None,
        on_lost: OnLost | None = None,
    ) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self.holder = holder or Holder.this_process()
        self._store = store
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease {name}", daemon=True)

    @property
    def interval_s(self) -> float:
        """Time between heartbeats: three beats fit in one ttl."""
        return self.ttl_s / 3

    @property
    def lost(self) -> bool:
        """Whether a heartbeat found the lease taken by another holder."""
        return self._lost.is_set()

    def acquire(self) -> LeaseRecord:
        """Take the lease (or renew it, when already ours); LeaseHeld when another has it."""
        record = self._store.acquire(self.name, self.holder, self.ttl_s)
        if record.holder != self.holder and _gone(record.holder, self.holder):
            # A process of this host that died holding it (killed, or a database that
            # refused its last writes): no need to wait out its ttl.
            log.warning("lease %s: taking it from %s, which has exited", self.name, record.holder)
            self._store.release(self.name, record.holder)
            record = self._store.acquire(self.name, self.holder, self.ttl_s)
        if record.holder != self.holder:
            raise LeaseHeld("lease", self.name, record)
        return record

    def start(self) -> None:
        """Renew every :attr:`interval_s` on a daemon thread until :meth:`release`."""
        self._thread.start()

    def tick(self) -> bool:
        """One heartbeat; False once the lease is lost (``on_lost`` is then called once).

        A database that refuses the renewal is logged and tried again at the next
        beat: the lease survives two missed beats.
        """
        if self.lost:
            return False
        try:
            if self._store.renew(self.name, self.holder, self.ttl_s):
                return True
            now = self._store.holder(self.name)
        except StorageError as exc:
            log.warning("lease %s: heartbeat failed, retrying: %s", self.name, exc)
            return True
        self._lost.set()
        by = f"now worked by {now.describe()}" if now else "it expired"
        log.error("lease %s lost: %s", self.name, by)
        if self._on_lost is not None:
            self._on_lost(now)
        return False

    def stop(self) -> None:
        """Stop the heartbeat; the lease stays taken until its ttl has passed."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def release(self) -> None:
        """Stop the heartbeat and free the lease (unless it was lost to another holder)."""
        self.stop()
        if not self.lost:
            self._store.release(self.name, self.holder)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s) and self.tick():
            pass


def _gone(holder: Holder, me: Holder) -> bool:
    """Whether ``holder`` ran on this host in a process that no longer exists."""
    return holder.host == me.host and holder.pid != me.pid and not psutil.pid_exists(holder.pid)


def wait_until_free(
    store: Leases,
    name: str,
    *,
    clock: Clock | None = None,
    poll_s: float = 1.0,
    on_wait: Callable[[LeaseRecord], None] | None = None,
) -> None:
    """Return once nobody holds ``name``; ``on_wait`` hears of each new holder seen."""
    clock = clock or SystemClock()
    seen: LeaseRecord | None = None
    while (record := store.holder(name)) is not None:
        if on_wait is not None and (seen is None or record.holder != seen.holder):
            on_wait(record)
        seen = record
        clock.sleep(poll_s)


__all__ = ["Lease", "LeaseHeld", "OnLost", "wait_until_free"]
