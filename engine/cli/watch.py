"""``recon watch [--every SECONDS] [--once]``: watch the month-end that is closing now.

Every ``checkFrequencyHours`` (or ``--every`` seconds, for demos) one tick starts
the jobs of the month that just ended, checks every open job for each collection
day not checked yet up to today, and finalizes them; one line per tick on standard
output. Exactly one watcher works per database: a second ``recon watch`` stands by,
naming the one that works, and takes over when it stops or dies. SIGTERM or Ctrl-C
stops it cleanly (exit 0): the tick's writes are committed, its unfinished checks
resume with the next watcher, and the lease is freed.
"""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from engine.app.watcher import TickReport, Watcher
from engine.cli.output import err
from engine.cli.signals import stopped_by_signals
from engine.sources.factory import serves_only_today

if TYPE_CHECKING:
    from engine.cli.core import Context
    from engine.store.leases import LeaseRecord


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "watch", help="watch the month closing now: check every open job once a collection day"
    )
    p.add_argument(
        "--every", type=float, metavar="SECONDS",
        help="seconds between ticks (default: the checkFrequencyHours setting)",
    )  # fmt: skip
    p.add_argument("--once", action="store_true", help="one tick, then exit (cron, demos)")
    p.add_argument("--districts", help="comma-separated district ids (default: all listed)")
    p.add_argument("--source", help="'sim' (default), a folder of CSV exports, or an http(s) URL")
    p.add_argument("--calendar", metavar="FILE", help="JSON: data month -> last closing date")
    p.set_defaults(handler=cmd_watch)


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    from engine.cli.core import split_districts

    console = ctx.console()
    watcher = Watcher(
        console,
        live=serves_only_today(ctx.settings.source),
        districts=split_districts(args.districts),
    )
    stop = threading.Event()
    with stopped_by_signals(stop.set):
        if not watcher.claim(stop, on_wait=_standing_by):
            err.print("stopped while standing by")
            return 0
        err.print(f"watching {escape(watcher.source)} as the database's watcher")
        if args.once:
            return _once(watcher)
        every_s = args.every or ctx.settings.recon.check_frequency_hours * 3600
        watcher.run(every_s=every_s, stop=stop, on_tick=_log)
    err.print("stopped: the lease is free; unfinished checks resume with the next watcher")
    return 0


def _once(watcher: Watcher) -> int:
    watcher.lease.start()
    try:
        report = watcher.tick()
    finally:
        watcher.close()
    _log(report)
    return 1 if report.errors else 0


def _log(report: TickReport) -> None:
    print(report.line(), flush=True)


def _standing_by(record: LeaseRecord) -> None:
    err.print(f"standing by: the watcher is {escape(record.describe())}")
