"""The watcher: follows the month-end that is closing now, one tick at a time.

A tick (:meth:`Watcher.tick`) is one step, run on the console's batch runner:

1. the month that just ended (:func:`~engine.app.months.latest_ended_month` of
   today) gets a job for every district the source lists; a district that
   appears later is added while the month is still open;
2. every open job, of that month and of any earlier month still open, is checked
   for each collection day not checked yet, up to today: a folder source or the
   simulator catches missed days up; a live dashboard (``live=True``) serves
   only today, so a missed day is recorded as a gap;
3. jobs finalize by the usual rules (the reconciler decides);
4. the tick is counted and the watcher's status row is written
   (:mod:`engine.store.watcher`), so other processes can show it.

:meth:`Watcher.run` ticks every ``every_s`` seconds (``checkFrequencyHours``, or
``recon watch --every`` for demos) until its stop event is set. Exactly one
watcher works per database: it holds the lease :data:`WATCHER_LEASE` with a
heartbeat; :meth:`Watcher.claim` takes it, or stands by until it is free (at
once when its holder's process on this host has died, else after the lease's
ttl). Everything a tick did is in the database, so a restarted watcher goes on
where the last one stopped, and a (job, collection date) is never checked twice.

Tests drive :meth:`Watcher.tick` with a :class:`~engine.clock.FakeClock` and no
threads (like arq's burst mode): the batch runs in the calling thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from engine.app.console import Console
from engine.app.lease import Lease, LeaseHeld
from engine.app.months import latest_ended_month
from engine.clock import Clock
from engine.domain.models import Job, month_end, validate_district
from engine.errors import ConflictError, EngineError, SourceError, StorageError
from engine.store.leases import Holder, LeaseRecord, SqlLeases
from engine.store.watcher import SqlWatcherStatus, WatcherStatus

log = logging.getLogger(__name__)

WATCHER_LEASE = "watcher"
"""Name of the lease (and the status row) of a database's one watcher."""
OUTAGE_RETRY_S = 5.0  # a tick the database failed is tried again this soon
POLL_S = 0.1  # how often a running tick looks whether its batches are done or it must stop


@dataclass(frozen=True)
class TickReport:
    """What one tick did."""

    at: datetime
    today: date
    months: tuple[str, ...]
    open_jobs: int
    """Jobs of the watched months not finished after the tick."""
    finalized: int
    """Jobs of the watched months finished after the tick."""
    checks: int
    """Checks made (an export fetched and recorded)."""
    gaps: int
    """Collection days passed without an export (missed, or not served any more)."""
    errors: tuple[str, ...]
    stopped: bool = False
    """The tick was stopped before its batches finished (they resume at the next tick)."""

    def line(self) -> str:
        """One log line: time, months, open/finalized counts, checks made, gaps."""
        months = ",".join(self.months) or "-"
        text = (
            f"{self.at:%Y-%m-%d %H:%M:%S} UTC today {self.today} month {months}: "
            f"open {self.open_jobs}, finalized {self.finalized}, "
            f"checks {self.checks}, gaps {self.gaps}"
        )
        if self.stopped:
            text += ", stopped"
        return text + "".join(f"; error: {e}" for e in self.errors)


class Watcher:
    """The watcher of one console's database; one thread ticks it.

    Args:
        console: the engine it works through (its source, storage and batch runner).
        clock: today, and the status row's times (default: the console's).
        live: the source serves only today's exports (a live dashboard over HTTP):
            missed days are gaps, not fetched.
        districts: watch only these districts (default: every one the source lists).
        holder: who claims the lease (default: a new holder in this process).
    """

    def __init__(
        self,
        console: Console,
        *,
        clock: Clock | None = None,
        live: bool = False,
        districts: Sequence[str] | None = None,
        holder: Holder | None = None,
    ) -> None:
        self._console = console
        self._clock = clock or console.clock
        self._live = live
        self._only = frozenset(validate_district(d) for d in districts) if districts else None
        self._status = SqlWatcherStatus(console.storage)
        self.lease = Lease(
            SqlLeases(console.storage, clock=self._clock),
            WATCHER_LEASE,
            ttl_s=console.settings.storage.lease_ttl_s,
            holder=holder,
        )
        self._started = self._clock.now()
        self._period_s: float | None = None  # set by periodic_tick

    @property
    def source(self) -> str:
        """The source watched ('sim', a folder, a URL)."""
        return self._console.source.name or self._console.settings.source.source

    # --- the lease ---------------------------------------------------------------------

    def claim(
        self,
        stop: threading.Event,
        *,
        on_wait: Callable[[LeaseRecord], None] | None = None,
        wait: bool = True,
    ) -> bool:
        """Take the watcher lease; while another holds it, stand by (``wait``) until it
        is free, telling ``on_wait`` of each holder seen. False when ``stop`` is set
        first, or when the lease is held and ``wait`` is False."""
        seen: Holder | None = None
        poll_s = min(1.0, self.lease.ttl_s / 3)
        while not stop.is_set():
            try:
                self.lease.acquire()
                return True
            except LeaseHeld as held:
                if held.record.holder != seen and on_wait is not None:
                    on_wait(held.record)
                seen = held.record.holder
                if not wait:
                    return False
            stop.wait(poll_s)
        return False

    # --- running -----------------------------------------------------------------------

    def run(
        self,
        *,
        every_s: float,
        stop: threading.Event,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        """Tick every ``every_s`` seconds until ``stop`` is set or the lease is lost;
        the lease must be claimed. The batch runner works in the background; a stop
        during a tick leaves its batches unfinished, resumed by the next watcher.
        Returns with the lease released and the status row marked stopped."""
        self.lease.start()
        self._console.batch.start()
        try:
            self._save(None, None)
            while not stop.is_set() and not self.lease.lost:
                report = self._tick_through_outage(every_s, stop)
                if report is not None and on_tick is not None:
                    on_tick(report)
                stop.wait(every_s if report is not None else min(every_s, OUTAGE_RETRY_S))
        finally:
            self.close()

    def _tick_through_outage(self, every_s: float, stop: threading.Event) -> TickReport | None:
        """A tick; None when the database failed it for a while (a server restart, a
        lost connection): the watcher goes on and the next tick catches the day up."""
        try:
            return self.tick(every_s=every_s, stop=stop)
        except StorageError as exc:
            if not exc.transient:
                raise
            log.warning("watch: the database failed this tick, trying again: %s", exc)
            return None

    def close(self) -> None:
        """Mark the status row stopped (its writes committed first) and free the lease."""
        try:
            self._console.storage.flush()
            if not self.lease.lost:
                self._save(None, None, stopped=True)
        finally:
            self.lease.release()

    def periodic_tick(self, every_s: float) -> TickReport | None:
        """One tick as a procrastinate periodic task (``recon worker --watch``): the
        lease is held for the tick only, and its batches are queued for the workers,
        not waited for. None when another watcher (``recon watch``) holds the lease."""
        try:
            self.lease.acquire()
        except LeaseHeld:
            return None
        self._period_s = every_s
        try:
            return self.tick(every_s=every_s, drain=False)
        finally:
            self.lease.release()

    def tick(
        self,
        *,
        every_s: float | None = None,
        stop: threading.Event | None = None,
        drain: bool = True,
    ) -> TickReport:
        """One step: start, check and finalize up to today; record the tick.

        Without ``stop`` the batches run in the calling thread (burst mode); with it
        they run on the runner's background threads and the tick returns early
        once ``stop`` is set. Without ``drain`` the batches are only started (the
        procrastinate runner's workers run them)."""
        at = self._clock.now()
        today = at.date()
        months = self._months(today)
        before = self._jobs(months)
        errors: list[str] = []
        batches = [
            b for m in months if (b := self._start(m, today, errors, busy_ok=not drain)) is not None
        ]
        stopped = drain and not self._drain(batches, stop)
        after = self._jobs(months)
        report = _report(at, today, months, before, after, errors, stopped=stopped)
        log.info("watch: %s", report.line())
        self._record(report, every_s)
        return report

    # --- one tick's parts ----------------------------------------------------------------

    def _months(self, today: date) -> tuple[str, ...]:
        """The month that just ended, and every earlier month with open jobs."""
        latest = latest_ended_month(today)
        earlier = {r["month"] for r in self._console.storage.runs() if r["month"] < latest}
        still_open = [m for m in sorted(earlier) if _open(self._console.storage.jobs(month=m))]
        return (*still_open, latest)

    def _start(
        self, month: str, today: date, errors: list[str], *, busy_ok: bool = False
    ) -> int | None:
        """Submit ``month``'s open jobs for the days up to today; the batch, if any.
        ``busy_ok``: a month a batch still works is no error (periodic ticks do not
        wait for their batches: the next tick goes on)."""
        try:
            jobs = self._console.storage.jobs(month=month)
            districts = self._add_new_districts(month, today, jobs)
            if districts is None:
                return None
            result = self._console.continue_month(
                month, districts=districts, until=today, live=self._live
            )
        except LeaseHeld as held:  # e.g. a `recon run` of that month: the next tick goes on
            errors.append(f"{month} skipped: {held}")
            return None
        except ConflictError as exc:  # a batch still works the month
            if not busy_ok:
                errors.append(f"{month}: {exc}")
            return None
        except EngineError as exc:
            errors.append(f"{month}: {exc}")
            return None
        return None if result is None else result.batch_id

    def _add_new_districts(self, month: str, today: date, jobs: list[Job]) -> list[str] | None:
        """The districts to start ``month`` with (None: nothing to check today); districts
        listed by the source since the run started are added to it while it is open."""
        if jobs and not _open(jobs):
            return None
        known = [j.district for j in jobs]
        listed = self._listed(month, today) if month == latest_ended_month(today) else []
        new = [d for d in listed if d not in set(known)]
        if jobs and new:
            run_id = self._console.storage.latest_run(month)
            assert run_id is not None  # jobs come from it
            jobs = self._console.storage.add_jobs(run_id["id"], month, new)
            log.info("watch: %s: districts added: %s", month, ", ".join(new))
        if jobs and all(j.status.finished or _checked(j, today) for j in jobs):
            return None  # every open job is checked up to today already
        return known + new if (known or new) else None

    def _listed(self, month: str, today: date) -> list[str]:
        """The districts the source lists for ``month`` today (else on its first day)."""
        try:
            found = self._console.source.districts(month, today)
        except SourceError:
            found = self._console.districts(month)
        return [d for d in found if self._only is None or d in self._only]

    def _drain(self, batches: list[int], stop: threading.Event | None) -> bool:
        """Wait for ``batches`` to finish (and settle their jobs); False when stopped."""
        runner = self._console.batch
        if stop is None:
            runner.run(until_idle=True)
        else:
            while not all(runner.progress(b).done for b in batches):
                if stop.wait(POLL_S):
                    return False
        for batch_id in batches:
            self._console.settle(batch_id)
        return True

    def _jobs(self, months: Iterable[str]) -> dict[int, Job]:
        return {j.id: j for m in months for j in self._console.storage.jobs(month=m)}

    def _record(self, report: TickReport, every_s: float | None) -> None:
        self._console.storage.flush()  # the tick's checks are committed before it is
        later = None if every_s is None else report.at + timedelta(seconds=every_s)
        self._save(report, later)

    def _save(
        self, report: TickReport | None, next_at: datetime | None, *, stopped: bool = False
    ) -> None:
        """Write the status row: this watcher's, the last tick's figures carried over."""
        holder = self.lease.holder
        found = self._status.load(WATCHER_LEASE)
        status = replace(
            found or WatcherStatus(WATCHER_LEASE, "", "", 0, "", self._started),
            holder=holder.id,
            host=holder.host,
            pid=holder.pid,
            source=self.source,
            started_at=self._started,
            stopped_at=self._clock.now() if stopped else None,
            period_s=self._period_s,
        )
        if report is not None:
            status = replace(
                status,
                last_tick_at=report.at,
                next_tick_at=next_at,
                ticks=status.ticks + 1,
                open_jobs=report.open_jobs,
                last_error=report.errors[-1] if report.errors else None,
            )
        self._status.save(status)


def _open(jobs: Iterable[Job]) -> bool:
    return any(not j.status.finished for j in jobs)


def _checked(job: Job, today: date) -> bool:
    return job.last_check_date is not None and job.last_check_date >= today


def _report(
    at: datetime,
    today: date,
    months: tuple[str, ...],
    before: dict[int, Job],
    after: dict[int, Job],
    errors: list[str],
    *,
    stopped: bool,
) -> TickReport:
    checks = days = 0
    for job in after.values():
        old = before.get(job.id)
        checks += job.checks - (old.checks if old else 0)
        days += _days(job) - (_days(old) if old else 0)
    finished = sum(1 for j in after.values() if j.status.finished)
    return TickReport(
        at=at,
        today=today,
        months=months,
        open_jobs=len(after) - finished,
        finalized=finished,
        checks=checks,
        gaps=max(0, days - checks),
        errors=tuple(errors),
        stopped=stopped,
    )


def _days(job: Job) -> int:
    """Collection days checked so far (the first is the day after month end)."""
    if job.last_check_date is None:
        return 0
    return (job.last_check_date - month_end(job.month)).days


__all__ = ["POLL_S", "WATCHER_LEASE", "TickReport", "Watcher", "start_embedded"]


def start_embedded(console: Console) -> Callable[[], None] | None:
    """The dashboard's own watcher: a thread watching the simulator by the real date.

    Started unless ``[watch] embedded`` is off, the source is not the simulator, or
    another watcher holds the lease (that one is shown instead). Returns the function
    that stops it (the current step ends, the lease is freed), or None.
    """
    if not console.settings.watch.embedded or console.settings.source.source != "sim":
        return None
    watcher = Watcher(console)
    stop = threading.Event()
    if not watcher.claim(stop, wait=False):
        return None
    every_s = console.settings.recon.check_frequency_hours * 3600
    thread = threading.Thread(
        target=watcher.run, kwargs={"every_s": every_s, "stop": stop}, name="watcher", daemon=True
    )
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join()

    return halt
