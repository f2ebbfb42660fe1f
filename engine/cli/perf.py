"""``recon perf stats|bottlenecks|report|resources [--window 5m] [--json]``.

A CLI process has measured nothing itself, so these commands read the history
that every process (runs, API, dashboard) persists to the database.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from engine.cli.output import out
from engine.monitor.core import (
    Bottleneck,
    Figure,
    Monitor,
    OperationStats,
    Recommendation,
    ReportSummary,
    parse_window,
)

if TYPE_CHECKING:
    from engine.cli.core import Context

_SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}


def register(subparsers: Any) -> None:
    perf = subparsers.add_parser("perf", help="performance monitor: timings, bottlenecks, advice")
    views = perf.add_subparsers(dest="perf_view", required=True, metavar="VIEW")
    for name, handler, text in (
        ("stats", cmd_stats, "per-operation statistics over a window"),
        ("bottlenecks", cmd_bottlenecks, "rules that fire, with their numbers and advice"),
        ("report", cmd_report, "summary, top operations, bottlenecks, resources, advice"),
        ("resources", cmd_resources, "process resources and engine gauges: average and peak"),
    ):
        view = views.add_parser(name, help=text)
        view.add_argument("--window", help="30s, 5m, 1h, 2d ... (default: the timeWindow setting)")
        view.add_argument("--json", action="store_true", help="print JSON")
        view.set_defaults(handler=handler)


def cmd_stats(args: argparse.Namespace, ctx: Context) -> int:
    return _listing(args, ctx, "stats", _stats_table, "Operations", "operations recorded")


def cmd_bottlenecks(args: argparse.Namespace, ctx: Context) -> int:
    return _listing(args, ctx, "bottlenecks", _bottleneck_table, "Bottlenecks", "bottlenecks")


def _listing(
    args: argparse.Namespace,
    ctx: Context,
    view: str,
    table: Callable[[Any, str], Table],
    title: str,
    none: str,
) -> int:
    """One of the monitor's lists over the window: JSON, a table, or a line saying it is empty."""
    monitor, window = _monitor(args, ctx)
    found = getattr(monitor, view)(window, source="history")
    if args.json:
        return _json([asdict(row) for row in found])
    if not found:
        out.print(f"No {none} in the last {_span(window)}.")
        return 0
    out.print(table(found, f"{title}, last {_span(window)}"))
    return 0


def cmd_report(args: argparse.Namespace, ctx: Context) -> int:
    monitor, window = _monitor(args, ctx)
    report = monitor.report(window, source="history")
    if args.json:
        return _json(asdict(report))
    out.print(_summary_table(report.summary, f"Performance report, last {_span(window)}"))
    if report.top_operations:
        out.print(_stats_table(report.top_operations, "Top operations (by total time)"))
    if report.bottlenecks:
        out.print(_bottleneck_table(report.bottlenecks, "Bottlenecks"))
    resources = report.resources
    if resources.summary:
        out.print(_resource_table(resources.count, resources.summary, "Resources"))
    if report.recommendations:
        out.print(_advice_table(report.recommendations))
    return 0


def cmd_resources(args: argparse.Namespace, ctx: Context) -> int:
    monitor, window = _monitor(args, ctx)
    found = monitor.resources(window, source="history")
    if args.json:  # each sample flat, its figures beside its time and process
        return _json({**asdict(found), "samples": [s.as_dict() for s in found.samples]})
    if not found.count:
        out.print(f"No resource samples in the last {_span(window)}.")
        return 0
    out.print(_resource_table(found.count, found.summary, f"Resources, last {_span(window)}"))
    return 0


def _monitor(args: argparse.Namespace, ctx: Context) -> tuple[Monitor, float]:
    window = parse_window(args.window) if args.window else ctx.settings.monitor.window_ms / 1000
    return ctx.console().monitor, window


def _json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return 0


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _stats_table(found: list[OperationStats], title: str) -> Table:
    # Ten columns: no rules and one space between them, so that they fit 80 columns.
    table = Table(
        title=title,
        caption="durations in ms",
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1),
        pad_edge=False,
    )
    table.add_column("operation", no_wrap=True)
    for name in ("calls", "ok", "per s", "mean", "p50", "p95", "p99", "max", "share"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in found:
        table.add_row(
            s.operation,
            str(s.calls),
            f"{s.success_rate:.1%}",
            f"{s.calls_per_second:.3g}",
            *(_ms(v) for v in (s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms)),
            f"{s.share_of_time:.0%}",
        )
    return table


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g}k"  # thousands of ms keep the column narrow
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def _bottleneck_table(found: list[Bottleneck], title: str) -> Table:
    table = Table(title=title)
    for name in ("severity", "operation", "rule", "finding", "recommendation"):
        table.add_column(name)
    for b in found:
        severity = f"[{_SEVERITY_STYLE[b.severity]}]{b.severity}[/]"
        table.add_row(severity, b.operation, b.rule, b.message, b.recommendation)
    return table


def _summary_table(summary: ReportSummary, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rate, mean = summary.success_rate, summary.mean_response_ms
    table.add_row("operations", str(summary.total_operations))
    table.add_row("distinct operations", str(summary.distinct_operations))
    table.add_row("success rate", "-" if rate is None else f"{rate:.1%}")
    table.add_row("mean response", "-" if mean is None else f"{mean:.2f} ms")
    return table


def _resource_table(count: int, summary: dict[str, Figure], title: str) -> Table:
    table = Table(title=title, caption=f"{count} samples")
    table.add_column("figure")
    table.add_column("average", justify="right")
    table.add_column("peak", justify="right")
    for name, figure in summary.items():
        table.add_row(name, f"{figure.avg:.4g}", f"{figure.peak:.4g}")
    return table


def _advice_table(advice: list[Recommendation]) -> Table:
    table = Table(title="Recommendations")
    for name in ("priority", "category", "recommendation"):
        table.add_column(name)
    for a in advice:
        priority = f"[{_SEVERITY_STYLE[a.priority]}]{a.priority}[/]"
        table.add_row(priority, a.category, a.message)
    return table
