"""Alerts wired to the console: the ``month-final`` rule and the performance figures.

:func:`build_notifier` gives the console its :class:`~engine.notify.notifier.Notifier`;
the two functions it passes read the console's parts (the month's jobs, the cache's
counters, the monitor's window) and are called from the notifier's background thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.app.months import MonthStatus, status_of
from engine.clock import Clock
from engine.domain.models import JobStatus
from engine.notify.delivery import Transport
from engine.notify.notifier import Notifier, WatcherTicks
from engine.notify.rules import OperationP95, PerfFigures
from engine.store.events import EventKind, NewEvent, SqlEventStore
from engine.store.watcher import SqlWatcherStatus

if TYPE_CHECKING:
    from engine.app.console import Console

__all__ = ["build_notifier", "month_final_event", "perf_figures", "watcher_ticks"]


def build_notifier(
    console: Console, *, clock: Clock, transport: Transport | None = None
) -> Notifier:
    """The console's notifier: events in its database, figures from its parts."""
    return Notifier(
        settings=console.settings.notify,
        recon=console.settings.recon,
        store=SqlEventStore(console.storage),
        clock=clock,
        month_check=lambda month: month_final_event(console, month),
        figures=lambda: perf_figures(console),
        watcher=lambda: watcher_ticks(console),
        transport=transport,
    )


def month_final_event(console: Console, month: str) -> NewEvent | None:
    """The ``month-final`` event of ``month`` when every job of its latest run has
    completed (:data:`MonthStatus.CLOSED` and none failed or was cancelled), else None.

    One event per run: a month run again and closed again is a new close.
    """
    progress = console.reconciler.month_progress(month)  # fresh: not the cached figures
    if status_of(progress, None) is not MonthStatus.CLOSED:
        return None
    if progress.by_status.get(JobStatus.FAILED) or progress.by_status.get(JobStatus.CANCELLED):
        return None
    jobs = console.storage.jobs(month=month)
    final = max((j.final_as_of for j in jobs if j.final_as_of), default=None)
    payload = {
        "run_id": progress.run_id,
        "districts": progress.total,
        "by_reason": dict(progress.by_reason),
        "final_as_of": final.isoformat() if final else None,
    }
    key = f"month-final:{month}:{progress.run_id}"
    return NewEvent(key=key, kind=EventKind.MONTH_FINAL, month=month, payload=payload)


def perf_figures(console: Console) -> PerfFigures:
    """This process's cache counters, p95 per operation over the monitor's window, and
    resident memory (peak of the samples of the last evaluation interval)."""
    total = console.cache.stats().total
    stats = console.monitor.stats(source="memory")
    window = console.settings.notify.evaluate_interval_s
    rss = console.monitor.resources(window, source="memory").summary.get("rss_mb")
    return PerfFigures(
        cache_hits=total.hits,
        cache_misses=total.misses,
        operations=[OperationP95(s.operation, s.p95_ms, s.calls) for s in stats],
        rss_mb=rss.peak if rss else None,
        memory_threshold_mb=float(console.settings.batch.memory_threshold_mb),
    )


def watcher_ticks(console: Console) -> WatcherTicks | None:
    """The database's watcher while it is meant to be running (not stopped), with its
    last tick and its period (next tick - last tick); None otherwise."""
    from engine.app.watcher import WATCHER_LEASE  # the watcher module builds on the console

    status = SqlWatcherStatus(console.storage).load(WATCHER_LEASE)
    if status is None or status.stopped_at is not None:
        return None
    if status.last_tick_at is None or status.next_tick_at is None:
        return None
    every_s = (status.next_tick_at - status.last_tick_at).total_seconds()
    return WatcherTicks(WATCHER_LEASE, status.last_tick_at, every_s) if every_s > 0 else None
