"""``recon cache stats [--json]`` and ``recon cache clear [--layer L]``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.table import Table

from engine.cache import LAYERS, LayerStats
from engine.cli.output import out

if TYPE_CHECKING:
    from engine.cli.core import Context

_ROWS = (
    ("hits", "Hits"),
    ("misses", "Misses"),
    ("hit_rate", "Hit rate"),
    ("evictions", "Evictions"),
    ("expirations", "Expirations"),
    ("prefetches", "Prefetches"),
    ("prefetch_hits", "Prefetch hits"),
    ("size", "Size"),
    ("max_size", "Max size"),
    ("hit_mean_us", "Hit µs (mean)"),
    ("hit_p95_us", "Hit µs (p95)"),
    ("miss_mean_us", "Miss µs (mean)"),
    ("miss_p95_us", "Miss µs (p95)"),
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cache", help="cache statistics and clearing")
    sub = parser.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    stats = sub.add_parser("stats", help="hits, misses, evictions, sizes and latency per layer")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(handler=cmd_stats)
    clear = sub.add_parser("clear", help="empty the cache (every layer unless --layer)")
    clear.add_argument("--layer", choices=LAYERS, help="only this layer")
    clear.set_defaults(handler=cmd_clear)


def cmd_stats(args: argparse.Namespace, ctx: Context) -> int:
    stats = ctx.console().cache.stats()
    if args.json:
        print(json.dumps(asdict(stats), indent=2))
        return 0
    columns: dict[str, LayerStats] = {**stats.layers, "total": stats.total}
    table = Table(title="Cache")
    table.add_column("", no_wrap=True)
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    for key, title in _ROWS:
        table.add_row(title, *(_cell(key, getattr(column, key)) for column in columns.values()))
    out.print(table)
    out.print(f"prefetches dropped (queue full): {stats.total.prefetch_dropped}")
    out.print(f"prefetches failed: {stats.total.prefetch_errors}")
    return 0


def cmd_clear(args: argparse.Namespace, ctx: Context) -> int:
    from engine.app.actions import clear_caches

    removed = clear_caches(ctx.console(), args.layer or "layers")
    out.print(f"cleared {removed} entries from {args.layer or 'every layer'}")
    return 0


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "hit_rate":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
