"""Freshness across processes: drop what this process cached of other processes' writes.

A dashboard, the API, a watcher and CLI runs each cache jobs, timelines and month
listings, and each invalidates its caches on its own writes. :class:`Freshness`
makes another process's commit reach them too, within :data:`POLL_INTERVAL_S`
plus one query: a thread polls the store's change feed
(:class:`~engine.store.changes.ChangeFeed`) and hands what changed to the
console, which drops exactly those entries.

Why a thread rather than a check on each read: a read that hits the cache stays
what it was (no clock read, no lock, no query on the hit path), and a process
pays one small indexed query per interval whatever its read rate. Long-lived
processes (dashboard, API, watcher) start it through
``Console.start_background``; a one-shot CLI command starts with empty caches
and does not need it. :meth:`Freshness.check` is the thread's step, callable
directly (tests, drain-and-return).

On PostgreSQL a waker (:func:`engine.store.changes.waker`: LISTEN/NOTIFY) ends the
thread's wait as soon as another writer commits, so the poll runs at once; the
interval stays as the fallback that catches a notification missed (a dropped
listening connection, a server restart).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.errors import StorageError
from engine.store.changes import NO_CHANGES, Changes, NoWaker, Waker

POLL_INTERVAL_S = 0.25
"""How often the thread asks the store what changed: staleness stays below
this plus a query, well inside the 2 seconds every process must see a commit in."""

log = logging.getLogger(__name__)


class ChangeSource(Protocol):
    """What other writers committed since the last poll (a ``ChangeFeed``)."""

    def poll(self) -> Changes: ...


@dataclass(frozen=True)
class FreshnessFigures:
    """How the watcher is doing (for stats and tests)."""

    polls: int
    changes_seen: int  # polls that found other writers' commits
    errors: int  # polls that failed (retried at the next interval)
    running: bool
    woken: int = 0  # waits another writer's notification ended early (PostgreSQL)


class Freshness:
    """Polls ``feed`` and hands what other writers changed to ``on_change``.

    Args:
        feed: the store's change feed.
        on_change: drops the cached values of the changed jobs and months.
        interval_s: the thread's polling interval.
        wake: ends the thread's wait early when another writer committed (default: none).
    """

    def __init__(
        self,
        *,
        feed: ChangeSource,
        on_change: Callable[[Changes], None],
        interval_s: float = POLL_INTERVAL_S,
        wake: Waker | None = None,
    ) -> None:
        self._feed = feed
        self._wake = wake or NoWaker()
        self._on_change = on_change
        self._interval_s = interval_s
        self._lock = threading.Lock()  # one check at a time: changes applied in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._polls = self._seen = self._errors = self._woken = 0

    def check(self) -> Changes:
        """Poll once and apply what changed; return it. A failed poll is counted,
        logged and returns no changes: the next one reads from the same place."""
        with self._lock:
            self._polls += 1
            try:
                changes = self._feed.poll()
            except StorageError as exc:
                self._errors += 1
                log.warning("freshness: could not read the changes: %s", exc)
                return NO_CHANGES
            if changes:
                self._seen += 1
                self._on_change(changes)
            return changes

    def start(self) -> None:
        """Start the polling thread, unless it runs."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._wake.wait(0)  # listening before this returns: no commit after it is missed
            self._thread = threading.Thread(target=self._run, name="freshness", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and wait for it; :meth:`start` may start it again."""
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.close()  # ends its wait
        if thread is not None:
            thread.join()

    def figures(self) -> FreshnessFigures:
        with self._lock:
            return FreshnessFigures(
                polls=self._polls,
                changes_seen=self._seen,
                errors=self._errors,
                running=self._thread is not None,
                woken=self._woken,
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            if self._wake.wait(self._interval_s):
                self._woken += 1
            else:  # no news: wait out the interval
                self._stop.wait(max(0.0, self._interval_s - (time.monotonic() - started)))
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # keep watching: a failing cache drop must not end freshness
                log.exception("freshness: applying changes failed")


__all__ = ["POLL_INTERVAL_S", "ChangeSource", "Freshness", "FreshnessFigures"]
