"""``recon bench [--suite e2e|storage|cache|batch|monitor|freshness|scale|all] [--quick]
[--json FILE] [--markdown FILE] [--against ID|FILE [--from ID|FILE]]``: run the benchmark
suites (see :mod:`engine.bench`).

Prints a table of every field with its target, writes the results as JSON
(one object per suite, plus ``machine``, ``date`` and ``quick``) and as a
Markdown table, and stores each suite's result in the database (the
dashboard's Before / after page lists them). Targets are judged on full runs;
a missed target is reported, not an error. A progress bar (per suite, and per
step of the e2e and scale suites) shows on a terminal, on stderr. The scale suite
needs PostgreSQL's programs (it starts a throwaway server) unless ``--db`` is a
PostgreSQL URL.

``--against`` compares the run with a stored one (a ``bench_results`` id or a
``--json`` file; see :mod:`engine.bench.against`) and exits 1 when a figure
with a target got worse beyond the two runs' spreads; ``--from`` compares a
stored run instead of running the suites.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from engine.bench import SUITES, judged, machine, run_suite, store
from engine.bench.against import Baseline, Movement, compare, load
from engine.cli.output import err, out
from engine.clock import SystemClock
from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.cli.core import Context

Results = Mapping[str, Mapping[str, Any]]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="benchmarks: before vs after, and against peers")
    p.add_argument("--suite", choices=(*SUITES, "all"), default="all", help="default: all")
    p.add_argument("--quick", action="store_true", help="small sizes, seconds (a smoke run)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown table")
    p.add_argument(
        "--against",
        metavar="ID|FILE",
        help="compare with a stored run (a stored result's id or a --json file); "
        "exit 1 when a targeted figure got worse beyond the runs' spreads",
    )
    p.add_argument(
        "--from",
        dest="from_",
        metavar="ID|FILE",
        help="with --against: compare this stored run instead of running the suites",
    )
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace, ctx: Context) -> int:
    if args.from_ and not args.against:
        raise ConfigError("from", args.from_, "compares with --against: name the other run")
    if args.from_:
        latest = load(args.from_, ctx.console().storage)
    else:
        latest = _run_and_store(args, ctx)
    if not args.against:
        return 0
    baseline = load(args.against, ctx.console().storage)
    return _report_against(baseline, latest)


def _run_and_store(args: argparse.Namespace, ctx: Context) -> Baseline:
    names = SUITES if args.suite == "all" else (args.suite,)
    started = SystemClock().now()
    # before the console starts its threads; suites that use a database (freshness) use
    # a scratch one on --db's server when it is PostgreSQL
    results = _run(names, quick=args.quick, db_url=ctx.settings.storage.db_url)
    storage = ctx.console().storage
    ids = [store(storage, name, r, quick=args.quick, when=started) for name, r in results.items()]
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
    out.print(f"stored as {', '.join(f'#{i}' for i in ids)}")
    return Baseline("this run", args.quick, results)


def _run(names: tuple[str, ...], *, quick: bool, db_url: str) -> dict[str, dict[str, Any]]:
    """Run the suites, with a progress bar on a terminal (nothing when piped)."""
    if not err.is_terminal:
        return {name: run_suite(name, quick=quick, db_url=db_url) for name in names}
    results = {}
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as bar:
        for name in names:
            label = f"{name}{' (quick)' if quick else ''}"
            task = bar.add_task(label, total=None)

            def report(
                what: str, done: int, total: int, task: Any = task, label: str = label
            ) -> None:
                bar.update(task, description=f"{label}: {what}", completed=done, total=total)

            results[name] = run_suite(name, quick=quick, on_progress=report, db_url=db_url)
            bar.update(task, description=f"{label}: done", total=1, completed=1)
    return results


def _report_against(baseline: Baseline, latest: Baseline) -> int:
    if baseline.quick != latest.quick:
        raise ConfigError("against", baseline.name, "compare runs of one size (quick or full)")
    moves = compare(baseline.results, latest.results)
    out.print(_against_table(moves, baseline.name, latest.name))
    worse = [f"{m.suite}.{m.field}" for m in moves if m.regression]
    if worse:
        out.print(f"[red]regression[/] against {baseline.name}: {', '.join(worse)}")
        return 1
    out.print(f"no targeted figure got worse against {baseline.name}")
    return 0


def _against_table(moves: Sequence[Movement], before: str, after: str) -> Table:
    table = Table(title=f"{after} against {before}", caption="moved: beyond both runs' spreads")
    for name in ("suite", "field", before, after, "tolerance", "verdict"):
        table.add_column(name, justify="right" if name not in ("suite", "field") else "left")
    styles = {"worse": "red", "better": "green", "moved": "yellow"}
    for m in moves:
        verdict = f"[{styles[m.verdict]}]{m.verdict}[/]" if m.verdict in styles else m.verdict
        table.add_row(
            m.suite, m.field, f"{m.before:.4g}", f"{m.after:.4g}", f"±{m.tolerance:.3g}", verdict
        )
    return table


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
    steps = results.get("e2e", {}).get("steps")
    if steps:
        lines += ["", "| e2e step | seconds |", "|---|---:|"]
        lines += [f"| {s['step']} | {s['seconds']:.4g} |" for s in steps]
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
