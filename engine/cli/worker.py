"""``recon worker`` and ``recon workers``: the procrastinate runner's workers.

``recon worker [--concurrency N]`` runs batch items deferred by any process whose
``[batch] runner`` is ``procrastinate`` (the database must be PostgreSQL:
``--db postgresql+psycopg://...``), on any machine that reaches the database;
one line per item on standard error. With ``--watch`` the workers also run the
watcher's tick as a procrastinate periodic task (one tick per period, whatever the
number of workers, every ``--watch-every`` seconds or ``checkFrequencyHours``).
SIGINT or SIGTERM stops it gracefully: running items get ``--grace`` seconds to
finish, then are queued again.
``recon workers`` lists the workers (host, pid, started, last heartbeat, running
items; a worker silent for ``stallTimeoutS`` is lost).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from engine.app import queries
from engine.cli.output import err, out

if TYPE_CHECKING:
    from engine.app.console import Console
    from engine.batch.remote import Watch
    from engine.cli.core import Context


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker", help="run batch items of the procrastinate runner (PostgreSQL) until stopped"
    )
    p.add_argument("--concurrency", type=int, default=2, help="items run at once (default 2)")
    p.add_argument(
        "--grace", type=float, default=10.0, metavar="SECONDS",
        help="on SIGINT/SIGTERM, running items get this long to finish (default 10)",
    )  # fmt: skip
    p.add_argument(
        "--watch", action="store_true",
        help="also run the watcher's tick as a procrastinate periodic task (one per period "
        "whatever the number of workers; replaces `recon watch`)",
    )  # fmt: skip
    p.add_argument(
        "--watch-every", type=float, metavar="SECONDS",
        help="seconds between ticks (default: the checkFrequencyHours setting)",
    )  # fmt: skip
    p.add_argument("--watch-districts", help="comma-separated district ids (default: all)")
    p.set_defaults(handler=cmd_worker)
    w = subparsers.add_parser("workers", help="list the procrastinate runner's workers")
    w.add_argument("--json", action="store_true", help="print JSON")
    w.set_defaults(handler=cmd_workers)


def cmd_worker(args: argparse.Namespace, ctx: Context) -> int:
    from engine.batch.remote import WorkerProcess
    from engine.errors import ConfigError

    if not 1 <= args.concurrency <= 100:
        raise ConfigError("--concurrency", args.concurrency, "expected 1 to 100")
    ctx.settings = ctx.settings.with_values("batch", runner="procrastinate")
    console = ctx.console()
    watch = _watch(args, console) if args.watch else None
    worker = WorkerProcess(
        console, concurrency=args.concurrency, grace_s=max(0.0, args.grace), say=_say,
        watch=watch,
    )  # fmt: skip
    worker.run()
    return 0


def _watch(args: argparse.Namespace, console: Console) -> Watch:
    from engine.app.watcher import Watcher
    from engine.cli.core import split_districts
    from engine.sources.factory import serves_only_today

    every_s = args.watch_every or console.settings.recon.check_frequency_hours * 3600
    watcher = Watcher(
        console,
        live=serves_only_today(console.settings.source),
        districts=split_districts(args.watch_districts),
    )

    def tick() -> str:
        report = watcher.periodic_tick(every_s)
        return "skipped: another watcher holds the lease" if report is None else report.line()

    return every_s, tick


def _say(line: str) -> None:
    err.print(escape(line), soft_wrap=True)


def cmd_workers(args: argparse.Namespace, ctx: Context) -> int:
    rows = queries.workers_rows(ctx.console())
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    table = Table(title="Workers")
    for column in ("id", "host", "pid", "state", "started", "last heartbeat", "running", "done"):
        table.add_column(column)
    for r in rows:
        running = ", ".join(r["running"]) or "-"
        table.add_row(str(r["id"]), r["host"], str(r["pid"]), r["state"], r["started_at"],
                      r["heartbeat_at"], running, str(r["done"]))  # fmt: skip
    out.print(table)
    return 0
