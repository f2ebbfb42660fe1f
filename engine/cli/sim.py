"""``recon sim``: the district dashboard simulator on its own.

``recon sim serve`` serves its CSV exports over HTTP on 127.0.0.1 (for
``recon run --source http://127.0.0.1:8765``); ``recon sim export`` writes them
to a folder (for ``recon run --source DIR``). Neither touches the database.
"""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from engine.cli.options import Clamped, district_ids, finite_float, split_ids
from engine.domain.models import validate_district, validate_month
from engine.errors import ConfigError
from engine.settings import SourceSettings
from engine.sources.sim import (
    Simulator,
    export_dates,
    export_folder,
    load_calendar,
    serve_simulator,
)

if TYPE_CHECKING:
    from engine.cli.core import Context

out = Console()
err = Console(stderr=True)


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser("sim", help="the district dashboard simulator")
    sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SUBCOMMAND")

    serve = sub.add_parser("serve", help="serve CSV exports over HTTP until Ctrl-C")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    serve.add_argument("--seed", type=int, help="simulator seed")
    serve.add_argument(
        "--latency-ms", type=finite_float, action=Clamped, setting="source.latency_ms",
        help="latency added to every export request",
    )  # fmt: skip
    serve.add_argument(
        "--failure-rate", type=finite_float, action=Clamped, setting="source.failure_rate",
        help="share of requests failing transiently (HTTP 500, reset, hang), 0-1",
    )  # fmt: skip
    serve.add_argument("--calendar", metavar="FILE", help="JSON: data month -> last closing date")
    serve.set_defaults(handler=cmd_serve)

    export = sub.add_parser("export", help="write a month's exports to a folder")
    export.add_argument("--month", required=True, help="data month YYYY-MM")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    export.add_argument(
        "--districts", type=district_ids, help="comma-separated district ids (default: all)"
    )
    export.add_argument("--seed", type=int, help="simulator seed")
    export.add_argument("--calendar", metavar="FILE", help="JSON: data month -> last closing date")
    export.set_defaults(handler=cmd_export)


def _simulator(
    args: argparse.Namespace, settings: SourceSettings, *, latency_ms: float = 0.0
) -> Simulator:
    """A simulator from the command's options, falling back to the source settings."""
    path = args.calendar or settings.calendar_file
    return Simulator(
        seed=settings.seed if args.seed is None else args.seed,
        latency_ms=latency_ms,
        calendar=load_calendar(path) if path else None,
    )


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    """Serve until Ctrl-C."""
    settings = ctx.settings.source
    latency = settings.latency_ms if args.latency_ms is None else args.latency_ms
    rate = settings.failure_rate if args.failure_rate is None else args.failure_rate
    sim = _simulator(args, settings, latency_ms=latency)
    server = serve_simulator(sim, args.host, args.port, failure_rate=rate)
    out.print(
        f"Simulator (seed {sim.seed}) serving CSV exports at {server.url}/export.aspx",
        soft_wrap=True,
    )
    out.print(f"  try: recon run --month 2025-06 --source {server.url}", soft_wrap=True)
    out.print("Press Ctrl-C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        out.print("Stopped.")
    finally:
        server.shutdown()
    return 0


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    """Write every collection date from the day after month end to 3 days past the closing."""
    month = validate_month(args.month)
    sim = _simulator(args, ctx.settings.source)
    districts = _districts(args.districts, sim)
    total = len(export_dates(sim, month)) * (len(districts) + 1)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(f"Exporting {month}", total=total)
        for _ in export_folder(sim, month, args.out, districts=districts):
            bar.advance(task)
    out.print(
        f"Wrote {total} files for {len(districts)} districts to {args.out} "
        f"(closing date {sim.closing_end(month)}).",
        soft_wrap=True,
    )
    return 0


def _districts(value: str | None, sim: Simulator) -> list[str]:
    if not value:
        return sim.districts()
    chosen = [validate_district(d) for d in split_ids(value)]
    unknown = sorted(set(chosen) - set(sim.districts()))
    if unknown:
        raise ConfigError("districts", ",".join(unknown), "not simulator districts")
    return chosen
