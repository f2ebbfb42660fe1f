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
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from engine import settings as settings_mod
from engine.app import queries
from engine.cli.options import Clamped, check_simulator_options, district_ids, finite_float
from engine.cli.output import err, out
from engine.clock import clock_from_env
from engine.domain.models import JobStatus, validate_month
from engine.errors import ConfigError, EngineError
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.app.console import Console
    from engine.batch.runner import SubmitResult
    from engine.store.leases import LeaseRecord

COMMAND_MODULES = (
    "export", "watch", "sim", "batch", "cache", "perf", "bench", "api", "events", "worker",
    "cluster",
)  # fmt: skip


class Context:
    """What a command handler gets: the settings and the console, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._console: Console | None = None

    def console(self) -> Console:
        if self._console is None:
            from engine.app.console import Console

            # The system clock; RECON_TODAY=YYYY-MM-DD moves its date (demos, audits).
            self._console = Console(self.settings, clock=clock_from_env())
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
    p.add_argument(
        "--districts", type=district_ids, help="comma-separated district ids (default: all)"
    )
    p.add_argument(
        "--mode", choices=("naive", "optimized"), help="storage mode (default optimized)"
    )
    p.add_argument(
        "--concurrency", type=int, action=Clamped, setting="batch.max_concurrent_jobs",
        help="districts worked at once (1-20)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, help="simulator seed")
    p.add_argument(
        "--calendar", metavar="FILE",
        help="JSON: data month -> last closing date (simulator only)",
    )  # fmt: skip
    p.add_argument("--source", help="'sim' (default), a folder of CSV exports, or an http(s) URL")
    p.add_argument(
        "--latency-ms", type=finite_float, action=Clamped, setting="source.latency_ms",
        help="simulated latency per fetch (simulator only)",
    )  # fmt: skip
    p.add_argument(
        "--until",
        type=iso_date,
        metavar="DATE",
        help="replay collection dates up to DATE (default: today): the close as it stood then",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="if another process works the month, wait for it, then continue what is left "
        "(default: exit 2 naming it)",
    )
    p.set_defaults(handler=cmd_run)


def iso_date(value: str) -> date:
    """A ``YYYY-MM-DD`` command-line value."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from exc


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="where each district of a month stands")
    p.add_argument("--month", required=True, help="target month YYYY-MM")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_status)


def split_districts(value: str | None) -> list[str] | None:
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.app.months import replay_bound
    from engine.cli.batch import drain

    check_simulator_options(args, ctx.settings.source)
    console = ctx.console()
    until = replay_bound(args.month, until=args.until, today=console.today())
    started = time.monotonic()
    console.monitor.start()  # resource samples of this run go to the shared history
    console.alerts.start()  # events (a failed job, the month final) posted as they come
    result = _start_run(console, args.month, split_districts(args.districts), until, args.wait)
    code = 0
    if result is None:
        err.print(f"{escape(args.month)} was closed while this run waited: nothing left to do.")
    else:
        for note in result.notes:
            err.print(f"[yellow]note:[/] {escape(note)}")
        if console.settings.batch.runner == "procrastinate":
            err.print("items run in `recon worker` processes: waiting for them")
        code = drain(console.batch, [result.batch_id], summary=False)  # the month's, below
        console.settle(result.batch_id)  # every job's outcome in before counting them
    print_run_summary(ctx, args.month, until, time.monotonic() - started)
    return code


def _start_run(
    console: Console, month: str, districts: list[str] | None, until: date, wait: bool
) -> SubmitResult | None:
    """Start the month; another process working it: exit 2 naming it, or wait for it
    and continue what it left (None: it closed the month)."""
    from engine.app.lease import LeaseHeld

    waited = False
    while True:
        try:
            if waited:
                return console.continue_month(month, districts=districts, until=until)
            return console.start_batch(month, districts=districts, until=until)
        except LeaseHeld:
            if not wait:
                raise  # "month='2025-06': worked by HOST pid N since ...": exit 2
            waited = True
            _wait_for_month(console, month)


def _wait_for_month(console: Console, month: str) -> None:
    def say(record: LeaseRecord) -> None:
        err.print(f"waiting: {escape(month)} is worked by {escape(record.describe())}")

    with err.status(f"waiting for {escape(month)} to be free"):
        console.leases.wait(month, clock=console.clock, on_wait=say)


_STOPPED = (JobStatus.FAILED, JobStatus.CANCELLED)
_OPEN = (JobStatus.ACTIVE, JobStatus.PENDING)
"""Job states of a run summary's rows after the completed ones, in this order."""


def print_run_summary(ctx: Context, month: str, until: date, elapsed_s: float) -> None:
    from engine.app.months import month_status

    progress = ctx.console().month_progress(month)
    rows = queries.status_rows(ctx.console(), month)
    state = month_status(ctx.console(), month)
    checks = sum(r["checks"] for r in rows)
    caption = f"month {state.value} · {checks} checks in {elapsed_s:.1f} s"
    table = Table(title=f"Month-end {month}: summary", caption=caption)
    table.add_column("outcome")
    table.add_column("districts", justify="right")
    for reason, n in sorted(progress.by_reason.items()):
        table.add_row(f"completed: {reason}", str(n))
    for status in _STOPPED + _OPEN:
        if progress.by_status.get(status):
            table.add_row(status.value, str(progress.by_status[status]))
    out.print(table)
    # Unwrapped: an error names a file or URL that must stay whole to be copied.
    for line in failure_lines(rows):
        text = escape(line) if line.startswith(" ") else f"[red]failed:[/] {escape(line)}"
        out.print(text, soft_wrap=True)
    print_warnings(rows, month, limit=_SUMMARY_WARNINGS)
    still_open = [r for r in rows if r["status"] in _OPEN]
    if still_open:
        note = open_note(month, until, len(still_open), ctx.console().today())
        out.print(escape(note), soft_wrap=True)


# Where an error happened (a file path or URL, a district): left out to group errors.
_WHERE = re.compile(r"[^\s,]*/[^\s,]*|\bdistrict [A-Za-z0-9]{1,4}\b")


def failure_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per distinct error of the failed districts (the file or URL and the
    district left out), most frequent first, with the first district's own error."""
    by_error: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == JobStatus.FAILED:
            error = r["error"] or "no error recorded"
            by_error.setdefault(_WHERE.sub("…", error), []).append(r)
    lines = []
    for error, failed in sorted(by_error.items(), key=lambda kv: -len(kv[1])):
        districts = ", ".join(r["district"] for r in failed)
        plural = "s" if len(failed) > 1 else ""
        lines.append(f"{len(failed)} district{plural} ({districts}): {error}")
        if error != failed[0]["error"]:
            lines.append(f"  e.g. district {failed[0]['district']}: {failed[0]['error']}")
    return lines


_SUMMARY_WARNINGS = 5  # districts' warning lines in a run's summary; status lists all


def warning_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per district whose exports warned (``status_rows``): its latest warning,
    naming file and code, and how many came before."""
    return [
        queries.DistrictWarnings(r["district"], tuple(r["warnings"])).summary
        for r in rows
        if r["warnings"]
    ]


def print_warnings(rows: Sequence[dict[str, Any]], month: str, *, limit: int | None) -> None:
    """A line per district whose exports warned, unwrapped (a file name must stay whole
    to be copied); with a ``limit``, the first ``limit`` and where to see them all."""
    lines = warning_lines(rows)
    for line in lines[:limit]:
        out.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    if limit is not None and lines:
        plural = "s" if len(lines) > 1 else ""
        out.print(
            f"{len(lines)} district{plural} with export warnings: "
            f"`recon status --month {month}` lists them.",
            soft_wrap=True,
        )


def open_note(month: str, until: date, count: int, today: date) -> str:
    """What a run that stopped at ``until`` with open districts says, and how to go on."""
    later = "again later" if until >= today else f"with a later --until (up to {today})"
    return (
        f"{count} district{'s' if count > 1 else ''} still open: their closing period had not "
        f"ended by {until}, the last collection date replayed. To continue, run "
        f"`recon run --month {month}` {later}."
    )


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    from engine.app.months import MonthStatus, month_status

    rows = queries.status_rows(ctx.console(), validate_month(args.month))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    status = month_status(ctx.console(), args.month)
    if status is MonthStatus.NOT_STARTED:
        err.print(f"No jobs for {args.month} yet: start one with `recon run --month {args.month}`.")
        return 0
    table = Table(title=f"Month-end {args.month}", caption=f"month {status.value}")
    # Final metrics: `recon export` has them; warnings: their own lines below the table.
    shown = [col for col in rows[0] if col not in ("final_metrics", "warnings")]
    for col in shown:
        table.add_column(
            col.replace("_", " "),
            justify="right" if col in ("checks", "significant_changes") else "left",
        )
    for r in rows:
        table.add_row(*("" if r[col] is None else str(r[col]) for col in shown))
    out.print(table)
    print_warnings(rows, args.month, limit=None)
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
        return _handle(args, ctx)
    except ConfigError as exc:
        _error(exc)
        return 2
    except EngineError as exc:
        _error(exc)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted: unfinished work resumes with the same command")
        return 130
    except BrokenPipeError:
        return _broken_pipe()
    finally:
        if ctx is not None:
            _close(ctx)


def _handle(args: argparse.Namespace, ctx: Context) -> int:
    """Run the command; its output is flushed here, so a closed pipe is seen here too."""
    code: int = args.handler(args, ctx)
    sys.stdout.flush()
    return code


def _error(exc: EngineError) -> None:
    """An error as one line (not wrapped at the terminal's width)."""
    err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)


def _broken_pipe() -> int:
    """The reader of our output went away (``recon status --json | head``): stop
    quietly, as Unix tools do, with the exit status of a process killed by SIGPIPE."""
    try:
        # Whatever is still buffered for stdout would fail again at exit, noisily.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (tests capture it)
        pass
    return 128 + signal.SIGPIPE


def _close(ctx: Context) -> None:
    """Close the engine; a database that refuses the last writes is reported, not raised."""
    try:
        ctx.close()
    except EngineError as exc:
        note = "unfinished work resumes with the same command"
        err.print(f"[red]error:[/] {escape(str(exc))} ({note})")
