"""``recon events [--month M] [--kind K] [--json]``: stored alert events and their delivery."""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from engine.app import queries
from engine.cli.output import err, out
from engine.store.events import EventKind

if TYPE_CHECKING:
    from engine.cli.core import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "events", help="alert events (month final, job failed, ...) and their delivery"
    )
    parser.add_argument("--month", help="only events of this month YYYY-MM")
    parser.add_argument("--kind", choices=[k.value for k in EventKind], help="only this kind")
    parser.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=cmd_events)


def cmd_events(args: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console()
    found = queries.events(console, month=args.month, kind=args.kind, limit=max(1, args.limit))
    if args.json:
        webhook = console.settings.notify.webhook_url is not None
        rows = [
            {
                **dataclasses.asdict(e),
                "delivered": e.delivered,
                "delivery": queries.delivery_text(e, webhook=webhook),
            }
            for e in found
        ]
        print(json.dumps(rows, indent=2, default=_iso))
        return 0
    if not found:
        err.print("No events yet: they are recorded as months close and jobs fail.")
        return 0
    table = Table(title="Events", caption=_caption(ctx))
    rows = queries.event_rows(console, found)
    for column in rows[0]:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*(escape("" if v is None else str(v)) for v in row.values()))
    out.print(table)
    return 0


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _caption(ctx: Context) -> str:
    if ctx.settings.notify.webhook_url is None:
        return "no webhook: set \\[notify] webhook_url or RECON_NOTIFY_WEBHOOK_URL to post them"
    return "posted to the webhook (\\[notify] webhook_url)"
