"""``recon bench [--suite e2e|storage|cache|batch|monitor|freshness|all] [--quick] [--json FILE]
[--markdown FILE]``: run the benchmark suites (see :mod:`engine.bench`).

Prints a table of every field with its target, writes the results as JSON
(one object per suite, plus ``machine``, ``date`` and ``quick``) and as a
Markdown table, and stores each suite's result in the database (the
dashboard's Before / after page lists them). Targets are judged on full runs;
a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console as RichConsole
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.bench import SUITES, judged, machine, run_suite, store
from engine.clock import SystemClock
from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.cli.core import Context

out = RichConsole()
Results = Mapping[str, Mapping[str, float]]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="benchmarks: before vs after, and against peers")
    p.add_argument("--suite", choices=(*SUITES, "all"), default="all", help="default: all")
    p.add_argument("--quick", action="store_true", help="small sizes, seconds (a smoke run)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown table")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace, ctx: Context) -> int:
    names = SUITES if args.suite == "all" else (args.suite,)
    started = SystemClock().now()
    results = _run(names, quick=args.quick)  # before the console starts its threads
    storage = ctx.console().storage
    for name, result in results.items():
        store(storage, name, result, quick=args.quick, when=started)
    report = {
        "date": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        **results,
    }
    if args.json:
        _write(args.json, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        _write(args.markdown, markdown(results, report))
    out.print(_table(results, quick=args.quick))
    return 0


def _run(names: tuple[str, ...], *, quick: bool) -> dict[str, dict[str, float]]:
    results = {}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True) as progress:
        for name in names:
            task = progress.add_task(f"{name} suite{' (quick)' if quick else ''}", total=None)
            results[name] = run_suite(name, quick=quick)
            progress.remove_task(task)
            out.print(f"[green]done[/] {name}")
    return results


def markdown(results: Results, report: Mapping[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']}{' (quick sizes)' if report['quick'] else ''} on "
        f"{m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}.",
        "",
        "| suite | field | value | target | met? |",
        "|---|---|---:|---|---|",
        *(f"| {' | '.join(row)} |" for row in judged(results, judge=not report["quick"])),
    ]
    return "\n".join(lines) + "\n"


def _table(results: Results, *, quick: bool) -> Table:
    caption = "quick sizes: targets are judged on full runs" if quick else "seconds unless named"
    table = Table(title="recon bench", caption=caption)
    for name in ("suite", "field", "value", "target", "met?"):
        table.add_column(name, justify="right" if name == "value" else "left")
    for suite, field, value, target, met in judged(results, judge=not quick):
        style = {"yes": "green", "no": "red"}.get(met, "")
        table.add_row(suite, field, value, target, f"[{style}]{met}[/]" if style else met)
    return table


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError("output", path, f"cannot write: {exc.strerror}") from exc
