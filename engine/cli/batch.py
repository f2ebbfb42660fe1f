"""``recon batch``: start, list, show, cancel and resume batches of month-end work.

recon batch start --month 2025-06 [--districts 1,2,F] [--priority P]
                  [--concurrency N] [--retries N] [--timeout-ms N]
recon batch list | show ID | cancel ID | resume
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.batch.distributed import AnyRunner
from engine.batch.records import BatchInfo, BatchProgress
from engine.cli.options import Clamped, district_ids, split_ids
from engine.cli.output import err, out
from engine.domain.models import ItemState, validate_district, validate_month
from engine.errors import EngineError

_BAR_REFRESH_S = 0.25  # how often the progress bar reads the batches' progress
COUNTS = tuple(
    state.value
    for state in (ItemState.SUCCEEDED, ItemState.FAILED, ItemState.SKIPPED, ItemState.CANCELLED,
                  ItemState.QUEUED, ItemState.RUNNING, ItemState.RETRYING)
)  # fmt: skip
"""Item states in the order the tables show them (the first four: how items ended)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("batch", help="run and inspect batches of work")
    sub = parser.add_subparsers(dest="batch_command", required=True, metavar="ACTION")

    start = sub.add_parser("start", help="reconcile a month's districts as one batch")
    start.add_argument("--month", required=True, help="target month YYYY-MM")
    start.add_argument(
        "--districts", type=district_ids, help="comma-separated district ids (default: all)"
    )
    start.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    for option, field, help_ in (
        ("--concurrency", "max_concurrent_jobs", "maxConcurrentJobs for this batch (1-20)"),
        ("--retries", "retry_attempts", "retryAttempts for transient errors (0-10)"),
        ("--timeout-ms", "timeout_ms", "timeoutMs per attempt (1000-1800000)"),
    ):
        start.add_argument(option, type=int, action=Clamped, setting=f"batch.{field}", help=help_)
    _json_flag(start)
    start.set_defaults(handler=cmd_start)

    listing = sub.add_parser("list", help="the latest batches")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    _json_flag(listing)
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="one batch with its items and attempts")
    show.add_argument("batch_id", type=int)
    _json_flag(show)
    show.set_defaults(handler=cmd_show)

    cancel = sub.add_parser("cancel", help="cancel an unfinished batch")
    cancel.add_argument("batch_id", type=int)
    cancel.set_defaults(handler=cmd_cancel)

    resume = sub.add_parser("resume", help="continue batches a stopped process left unfinished")
    _json_flag(resume)
    resume.set_defaults(handler=cmd_resume)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def cmd_start(args: argparse.Namespace, ctx: Any) -> int:
    config = {
        "maxConcurrentJobs": args.concurrency,
        "retryAttempts": args.retries,
        "timeoutMs": args.timeout_ms,
    }
    districts = [validate_district(d) for d in split_ids(args.districts)]
    result = ctx.console().start_batch(
        validate_month(args.month),
        districts=districts or None,
        priority=args.priority,
        config={k: v for k, v in config.items() if v is not None},
    )
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    return drain(ctx.console().batch, [result.batch_id], as_json=args.json)


def cmd_resume(args: argparse.Namespace, ctx: Any) -> int:
    runner: AnyRunner = ctx.console().batch
    batch_ids = runner.resume()
    if not batch_ids:
        err.print("Nothing to resume: every batch is finished or cancelled.")
        if args.json:
            print("[]")
        return 0
    return drain(runner, batch_ids, as_json=args.json)


def cmd_list(args: argparse.Namespace, ctx: Any) -> int:
    batches = ctx.console().batch.list_batches(args.limit)
    if args.json:
        _print_json([dataclasses.asdict(b) for b in batches])
        return 0
    if not batches:
        err.print("No batches yet: start one with `recon batch start --month YYYY-MM`.")
        return 0
    table = Table(title="Batches")
    for column in ("id", "name", "status", "created", "total", *COUNTS[:4], "throttled s"):
        table.add_column(column, justify="right" if column not in ("name", "status") else "left")
    for b in batches:
        table.add_row(
            str(b.batch_id),
            b.name,
            b.status,
            f"{b.created_at:%Y-%m-%d %H:%M}",
            str(b.total),
            *(str(b.counts.get(c, 0)) for c in COUNTS[:4]),
            f"{b.throttled_s:.1f}",
        )
    out.print(table)
    return 0


def cmd_show(args: argparse.Namespace, ctx: Any) -> int:
    detail = ctx.console().batch.batch_detail(args.batch_id)
    if args.json:
        _print_json(dataclasses.asdict(detail))
        return 0
    info = detail.info
    out.print(_describe(info))
    table = Table(title=f"Items of batch {info.batch_id}")
    for column in ("item", "spec", "priority", "status", "attempts", "outcomes", "error"):
        table.add_column(
            column, justify="right" if column in ("item", "priority", "attempts") else "left"
        )
    for item in detail.items:
        table.add_row(
            str(item.item_id),
            json.dumps(item.spec, separators=(",", ":")),
            str(item.priority),
            item.status,
            str(len(item.attempts)),
            " ".join(a.outcome for a in item.attempts),
            item.error or "",
        )
    out.print(table)
    return 0


def cmd_cancel(args: argparse.Namespace, ctx: Any) -> int:
    ctx.console().batch.cancel(args.batch_id)
    out.print(f"Batch {args.batch_id} cancelled.")
    return 0


def drain(
    runner: AnyRunner, batch_ids: list[int], *, as_json: bool = False, summary: bool = True
) -> int:
    """Run until every batch is finished, with a progress bar read from the runner's
    progress (so it moves whichever process runs the items: threads here, or workers),
    then print the batches' summary (unless the caller prints its own)."""
    if as_json:
        runner.run(until_idle=True)
    else:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err) as bar:
            total = {b: runner.progress(b).total for b in batch_ids}
            tasks = {b: bar.add_task(f"batch {b}", total=total[b]) for b in batch_ids}

            def refresh() -> None:
                for batch_id, task in tasks.items():
                    bar.update(task, completed=_finished(runner.progress(batch_id)))

            with _every(_BAR_REFRESH_S, refresh):
                runner.run(until_idle=True)
            refresh()
    progress = [runner.progress(batch_id) for batch_id in batch_ids]
    if summary:
        _print_summary(progress, as_json=as_json)
    return 1 if any(p.failed for p in progress) else 0


@contextmanager
def _every(seconds: float, step: Callable[[], None]) -> Iterator[None]:
    """Call ``step`` every ``seconds`` on a thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            with contextlib.suppress(EngineError):  # a failed read: the next one retries
                step()

    thread = threading.Thread(target=loop, name="progress-bar", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _finished(p: BatchProgress) -> int:
    return p.succeeded + p.failed + p.skipped + p.cancelled


def _print_summary(progress: list[BatchProgress], *, as_json: bool) -> None:
    if as_json:
        _print_json([dataclasses.asdict(p) for p in progress])
        return
    table = Table(title="Batch summary")
    for column in ("batch", "total", *COUNTS[:4], "elapsed s", "throttled s"):
        table.add_column(column, justify="right")
    for p in progress:
        table.add_row(
            str(p.batch_id),
            str(p.total),
            str(p.succeeded),
            str(p.failed),
            str(p.skipped),
            str(p.cancelled),
            f"{p.elapsed_s:.1f}",
            f"{p.throttled_s:.1f}",
        )
    out.print(table)


def _describe(info: BatchInfo) -> str:
    counts = ", ".join(f"{n} {c}" for c in COUNTS if (n := info.counts.get(c)))
    config = ", ".join(f"{k}={v}" for k, v in info.config.items())
    finished = f", finished {info.finished_at:%Y-%m-%d %H:%M:%S}" if info.finished_at else ""
    return (
        f"Batch {info.batch_id} {info.name!r}: {info.status}, {info.total} items ({counts}); "
        f"created {info.created_at:%Y-%m-%d %H:%M:%S}{finished}; "
        f"throttled {info.throttled_s:.1f} s\nsettings: {config}"
    )


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
