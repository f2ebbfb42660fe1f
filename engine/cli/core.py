"""``recon``: the command line.

Settings come from defaults, ``--settings FILE`` (TOML), ``RECON_*`` variables
and the options of each command, in that order. ``--db URL`` and
``--settings FILE`` are accepted by every command, anywhere on the line.

Exit codes: 0 success, 1 the engine failed (database, source), 2 bad input.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console as RichConsole
from rich.markup import escape
from rich.table import Table

from engine import settings as settings_mod
from engine.domain.models import validate_month
from engine.errors import ConfigError, EngineError
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.app.console import Console

COMMAND_MODULES = ("sim", "batch", "cache", "perf", "bench", "api", "events")
out = RichConsole()
err = RichConsole(stderr=True)


class Context:
    """What a command handler gets: the settings and the console, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._console: Console | None = None

    def console(self) -> Console:
        if self._console is None:
            from engine.app.console import Console

            self._console = Console(self.settings)
            # Deferred writes reach the database even when the process ends another way
            # than through main()'s finally (close is idempotent).
            atexit.register(self._close_at_exit)
        return self._console

    def close(self) -> None:
        if self._console is not None:
            atexit.unregister(self._close_at_exit)
            self._console.close()

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except EngineError as exc:
            note = "queued writes were not saved; re-running the work rebuilds them"
            err.print(f"[red]error:[/] {escape(str(exc))} ({note})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", metavar="URL", help="database URL (default: SQLite file under data/)"
    )
    parser.add_argument("--settings", metavar="FILE", help="settings file (TOML)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_status(sub)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"engine.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"engine.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="replay a month's whole closing period for every district")
    p.add_argument("--month", required=True, help="target month YYYY-MM")
    p.add_argument("--districts", help="comma-separated district ids (default: all)")
    p.add_argument(
        "--mode", choices=("naive", "optimized"), help="storage mode (default optimized)"
    )
    p.add_argument("--concurrency", type=int, help="districts worked at once (1-20)")
    p.add_argument("--seed", type=int, help="simulator seed")
    p.add_argument("--calendar", metavar="FILE", help="JSON: data month -> last closing date")
    p.add_argument("--source", help="'sim' (default), a folder of CSV exports, or an http(s) URL")
    p.add_argument("--latency-ms", type=float, help="simulated latency per fetch")
    p.set_defaults(handler=cmd_run)


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="where each district of a month stands")
    p.add_argument("--month", required=True, help="target month YYYY-MM")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_status)


def split_districts(value: str | None) -> list[str] | None:
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.cli.batch import drain

    started = time.monotonic()
    ctx.console().monitor.start()  # resource samples of this run go to the shared history
    ctx.console().alerts.start()  # events (a failed job, the month final) posted as they come
    result = ctx.console().start_batch(args.month, districts=split_districts(args.districts))
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    code = drain(ctx.console().batch, [result.batch_id], summary=False)  # the month's, below
    print_run_summary(ctx, args.month, time.monotonic() - started)
    return code


def print_run_summary(ctx: Context, month: str, elapsed_s: float) -> None:
    from engine.app.months import month_status

    progress = ctx.console().month_progress(month)
    rows = ctx.console().status_rows(month)
    state = month_status(ctx.console(), month)
    table = Table(title=f"Month-end {month}: summary", caption=f"month {state.value}")
    table.add_column("outcome")
    table.add_column("districts", justify="right")
    for reason, n in sorted(progress.by_reason.items()):
        table.add_row(f"completed: {reason}", str(n))
    for status in ("failed", "cancelled", "active", "pending"):
        if progress.by_status.get(status):
            table.add_row(status, str(progress.by_status[status]))
    table.add_row("checks made", str(sum(r["checks"] for r in rows)))
    table.add_row("elapsed", f"{elapsed_s:.1f} s")
    out.print(table)


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    from engine.app.months import MonthStatus, month_status

    rows = ctx.console().status_rows(validate_month(args.month))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    status = month_status(ctx.console(), args.month)
    if status is MonthStatus.NOT_STARTED:
        err.print(f"No jobs for {args.month} yet: start one with `recon run --month {args.month}`.")
        return 0
    table = Table(title=f"Month-end {args.month}", caption=f"month {status.value}")
    for col in rows[0]:
        table.add_column(
            col.replace("_", " "),
            justify="right" if col in ("checks", "significant_changes") else "left",
        )
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r.values()))
    out.print(table)
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Command-line options that map onto settings fields."""
    pick = {
        ("storage", "db_url"): "db",
        ("storage", "mode"): "mode",
        ("source", "seed"): "seed",
        ("source", "calendar_file"): "calendar",
        ("source", "source"): "source",
        ("source", "latency_ms"): "latency_ms",
        ("batch", "max_concurrent_jobs"): "concurrency",
    }
    out_: dict[str, dict[str, Any]] = {}
    for (group, field), attr in pick.items():
        value = getattr(args, attr, None)
        if value is not None:
            out_.setdefault(group, {})[field] = value
    return out_


def _hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move ``--db`` and ``--settings`` in front of the command so they work anywhere."""
    front: list[str] = []
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        name = arg.split("=", 1)[0]
        if name in ("--db", "--settings"):
            front.append(arg)
            if "=" not in arg:
                front.append(next(it, ""))
        else:
            rest.append(arg)
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_hoist_global_options(list(sys.argv[1:] if argv is None else argv)))
    ctx: Context | None = None
    try:
        settings = settings_mod.load(args.settings, overrides=_overrides(args))
        ctx = Context(settings)
        code: int = args.handler(args, ctx)
        return code
    except ConfigError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 2
    except EngineError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 1
    except KeyboardInterrupt:
        err.print("interrupted: unfinished work resumes with the same command")
        return 130
    finally:
        if ctx is not None:
            _close(ctx)


def _close(ctx: Context) -> None:
    """Close the engine; a database that refuses the last writes is reported, not raised."""
    try:
        ctx.close()
    except EngineError as exc:
        note = "unfinished work resumes with the same command"
        err.print(f"[red]error:[/] {escape(str(exc))} ({note})")
