"""The notifier: records events where they happen, delivers them off the check path.

Where events come from:

- :meth:`Notifier.observe` sees every job write (the reconciler's ``on_write``).
  A check does no I/O for it: a ``late-revision`` is queued in memory and a
  finished job marks its month; the background thread stores the queue and
  evaluates ``month-final`` (it reads the whole month). The queue is as durable
  as the check's own deferred writes: a crash loses both, and the re-check that
  rebuilds them finds the revision again. ``job-failed`` comes with a committed
  status transition outside any check, and is stored at once;
- :meth:`Notifier.watcher_missed_ticks` is called by the watcher's supervisor;
- the background thread evaluates the performance alerts every
  ``evaluateIntervalS`` (:class:`~engine.notify.perf.PerfWatch`).

Delivery (when ``webhook_url`` is set) happens in the same thread: a dead
webhook delays nothing but its own retries. :meth:`Notifier.run_once` is one
step of that thread (tests drive it with a fake clock); :meth:`Notifier.close`
evaluates what is pending and makes one last delivery pass that stops at the
first failure: what is left is delivered by the next process on this database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.clock import Clock
from engine.domain.models import Job, JobStatus
from engine.errors import EngineError
from engine.notify.delivery import Backoff, Deliverer, HttpxTransport, PassResult, Transport
from engine.notify.perf import PerfWatch
from engine.notify.rules import PerfFigures, late_revision, missed_ticks
from engine.settings import NotifySettings, ReconSettings
from engine.store.events import Event, EventKind, EventStore, NewEvent

__all__ = ["WatcherTicks", "MIN_WAIT_S", "MonthCheck", "Notifier"]


@dataclass(frozen=True)
class WatcherTicks:
    """A running watcher's last tick and its period, as stored."""

    name: str
    last_tick: datetime
    every_s: float


log = logging.getLogger(__name__)

MIN_WAIT_S = 0.05  # the thread never spins faster than this
MonthCheck = Callable[[str], NewEvent | None]
"""The ``month-final`` event of a month if its close is final now, else None."""


class Notifier:
    """Stores events and delivers them. Thread-safe.

    Args:
        settings: the webhook, its retries and the alert thresholds.
        recon: the reconciliation settings (a job's projected close).
        store: where events are kept.
        clock: stamps events, decides what is due.
        month_check: the ``month-final`` rule (the console's: it reads the month).
        figures: reads the performance figures; None: no performance alerts.
        transport: posts bodies (default :class:`HttpxTransport` when a webhook is set).
    """

    def __init__(
        self,
        *,
        settings: NotifySettings,
        recon: ReconSettings,
        store: EventStore,
        clock: Clock,
        month_check: MonthCheck,
        figures: Callable[[], PerfFigures] | None = None,
        watcher: Callable[[], WatcherTicks | None] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self._recon = recon
        self._store = store
        self._clock = clock
        self._month_check = month_check
        self._figures = figures
        self._watcher = watcher
        self._perf = PerfWatch(settings)
        self._seen: dict[int, Job] = {}  # each job's last state, for late revisions
        self._months: set[str] = set()  # months with a job that finished, to evaluate
        self._queued: list[tuple[NewEvent, datetime]] = []  # from checks, stored by the thread
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_perf = clock.monotonic() + settings.evaluate_interval_s
        url = settings.webhook_url
        self._transport = transport or (HttpxTransport() if url else None)
        self._deliverer = None
        if url and self._transport is not None:
            self._deliverer = Deliverer(
                store=store,
                transport=self._transport,
                url=url,
                clock=clock,
                timeout_s=settings.timeout_s,
                backoff=Backoff(
                    first_s=settings.retry_delay_ms / 1000,
                    max_s=settings.max_retry_delay_ms / 1000,
                ),
            )

    # --- where events come from -------------------------------------------------------------

    def observe(self, job: Job) -> None:
        """See one job write (every check: keep it cheap)."""
        before = self._seen.get(job.id)
        if job.status.finished:
            self._seen.pop(job.id, None)
            self._finished(job)
            return
        self._seen[job.id] = job
        if before is not None and job.significant_changes > before.significant_changes:
            why = late_revision(before, job, self._recon)
            if why is not None:
                self._late(job, why)

    def _finished(self, job: Job) -> None:
        if job.status is JobStatus.FAILED:
            payload = {"error": job.error, "attempts": job.attempts, "checks": job.checks}
            self.emit(self._job_event(EventKind.JOB_FAILED, f"job-failed:{job.id}", job, payload))
        with self._lock:
            self._months.add(job.month)
        self._wake.set()

    def _late(self, job: Job, why: str) -> None:
        as_of = job.last_significant_as_of
        payload = {
            "why": why,
            "as_of": as_of.isoformat() if as_of else None,
            "collection_date": job.last_check_date.isoformat() if job.last_check_date else None,
            "significant_changes": job.significant_changes,
        }
        key = f"late-revision:{job.id}:{payload['as_of']}"
        event = self._job_event(EventKind.LATE_REVISION, key, job, payload)
        with self._lock:
            self._queued.append((event, self._clock.now()))
        self._wake.set()

    @staticmethod
    def _job_event(kind: EventKind, key: str, job: Job, payload: dict[str, Any]) -> NewEvent:
        return NewEvent(
            key=key, kind=kind, month=job.month, district=job.district, job_id=job.id,
            payload={"run_id": job.run_id, **payload},
        )  # fmt: skip

    def emit(self, event: NewEvent) -> bool:
        """Store ``event`` (committed) and wake the delivery; False if its key was stored."""
        added = self._store.add(event, self._clock.now())
        if added:
            self._wake.set()
        return added

    def watcher_missed_ticks(
        self, *, watcher: str, last_tick: datetime, every_s: float, threshold: int = 2
    ) -> bool:
        """Emit ``watcher-missed-ticks`` when the watcher missed ``threshold`` or more ticks
        since ``last_tick`` (once per last tick); return whether it did."""
        now = self._clock.now()
        missed = missed_ticks(last_tick, now, every_s)
        if missed < threshold:
            return False
        payload = {
            "watcher": watcher,
            "last_tick": last_tick.isoformat(),
            "missed": missed,
            "every_s": every_s,
        }
        key = f"watcher-missed-ticks:{watcher}:{last_tick.isoformat()}"
        return self.emit(NewEvent(key=key, kind=EventKind.WATCHER_MISSED_TICKS, payload=payload))

    def events(
        self, *, month: str | None = None, kinds: Sequence[str] = (), limit: int = 200
    ) -> list[Event]:
        """Stored events with their delivery state, newest first."""
        return self._store.find(month=month, kinds=kinds, limit=limit)

    # --- the background step ----------------------------------------------------------------

    def run_once(self, *, stop_at_failure: bool = False) -> PassResult:
        """Store the queued events, evaluate finished months and (when due) the performance
        alerts, then deliver what is due. One step of the background thread."""
        self.store_queued()
        self.evaluate_months()
        if self._clock.monotonic() >= self._next_perf:
            self._next_perf = self._clock.monotonic() + self.settings.evaluate_interval_s
            self.evaluate_performance()
            self.evaluate_watcher()
        if self._deliverer is None:
            return PassResult(0, 0, None)
        stopping = (lambda: False) if stop_at_failure else self._stop.is_set
        return self._deliverer.deliver_due(stop_at_failure=stop_at_failure, stopping=stopping)

    def store_queued(self) -> int:
        """Store the events checks queued (one transaction); return how many were new."""
        with self._lock:
            queued, self._queued = self._queued, []
        try:
            return self._store.add_all(queued)
        except EngineError:
            with self._lock:  # kept for the next round, in order
                self._queued[:0] = queued
            raise

    def evaluate_months(self) -> int:
        """Store the ``month-final`` event of each month whose close became final."""
        with self._lock:
            months, self._months = self._months, set()
        added = 0
        for month in sorted(months):
            event = self._month_check(month)
            if event is not None and self.emit(event):
                added += 1
        return added

    def evaluate_performance(self) -> int:
        """Store the performance alerts that started holding (see :class:`PerfWatch`)."""
        if self._figures is None:
            return 0
        found = self._perf.evaluate(self._figures(), self._clock.now())
        return sum(1 for event in found if self.emit(event))

    def evaluate_watcher(self) -> bool:
        """``watcher-missed-ticks`` when the database's running watcher has stopped ticking."""
        found = self._watcher() if self._watcher is not None else None
        if found is None:
            return False
        return self.watcher_missed_ticks(
            watcher=found.name, last_tick=found.last_tick, every_s=found.every_s
        )

    # --- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.run_once()
            except EngineError as exc:  # the database refused: try again next round
                log.warning("notifier: %s", exc)
                result = PassResult(0, 0, None)
            self._wake.wait(self._wait_s(result))
            self._wake.clear()

    def _wait_s(self, result: PassResult) -> float:
        wait = self._next_perf - self._clock.monotonic()
        if result.next_retry is not None:
            wait = min(wait, (result.next_retry - self._clock.now()).total_seconds())
        return max(MIN_WAIT_S, wait)

    def close(self) -> None:
        """Stop the thread, store the events still to evaluate, try one last delivery pass
        (stopping at the first failure). Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.run_once(stop_at_failure=True)
        finally:
            if self._transport is not None:
                self._transport.close()
