"""``recon export --month M --out FILE``: a month's final figures as CSV, for finance.

One row per district of the month's latest run: district, status, reason,
final as-of date and every final metric (empty while a district is not final).
The same text as the dashboard's download on Close progress and
``GET /api/reconciliation/months/{month}/final.csv``. ``--out -`` writes to
standard output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from engine.app.months import MonthStatus, month_status
from engine.app.queries import final_csv
from engine.cli.output import err
from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.cli.core import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("export", help="write a month's final figures as CSV")
    parser.add_argument("--month", required=True, help="target month YYYY-MM")
    parser.add_argument("--out", required=True, metavar="FILE", help="CSV file to write, or -")
    parser.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    text = final_csv(ctx.console(), args.month)
    rows = text.count("\n") - 1
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise ConfigError("out", args.out, f"cannot write the file: {exc.strerror}") from exc
    err.print(f"Wrote {rows} districts of {args.month} to {escape(args.out)}.")
    state = month_status(ctx.console(), args.month)
    if state is not MonthStatus.CLOSED:
        err.print(f"[yellow]month {state.value}:[/] rows without a final as-of date are not final.")
    return 0
