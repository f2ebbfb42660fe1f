"""``recon cluster [--workers 3] [--api-port 8000] [--dashboard-port 8501]``.

Every part of a several-machine set-up on this one: a throwaway PostgreSQL
(a new data folder, 127.0.0.1, deleted at the end), ``--workers`` batch workers
(``recon worker --watch``: they also tick the watcher, once a minute), the REST API (``recon
api``) and the dashboard, each its own process on that database with the
procrastinate runner, all on 127.0.0.1. It
prints the URLs and stops everything together on Ctrl-C or SIGTERM (and when any
part exits: a cluster missing a part is not the one you asked for). ``make
cluster`` runs it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.output import err
from engine.cli.signals import stopped_by_signals
from engine.store.pgserver import throwaway_postgres

if TYPE_CHECKING:
    from engine.cli.core import Context

_ROOT = Path(__file__).resolve().parents[2]
_STOP_GRACE_S = 20.0  # how long each part may take to stop before it is killed


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster", help="a throwaway PostgreSQL, workers, the API and the dashboard, on 127.0.0.1"
    )
    p.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    p.add_argument("--concurrency", type=int, default=2, help="items per worker (default 2)")
    p.add_argument("--api-port", type=int, default=8000, help="default 8000")
    p.add_argument("--dashboard-port", type=int, default=8501, help="default 8501")
    p.set_defaults(handler=cmd_cluster)


def cmd_cluster(args: argparse.Namespace, ctx: Context) -> int:
    stop = threading.Event()
    with stopped_by_signals(stop.set):
        err.print("starting a throwaway PostgreSQL (initdb in a temporary folder)")
        with throwaway_postgres() as server:
            env = _environment(server.url)
            with _parts(_commands(args), env) as procs:
                err.print(f"database   {server.url}", soft_wrap=True)
                err.print(f"           data in {server.data}, deleted when the cluster stops")
                err.print(f"api        http://127.0.0.1:{args.api_port}/docs")
                err.print(f"dashboard  http://127.0.0.1:{args.dashboard_port}")
                err.print(f"workers    {args.workers} x {args.concurrency}; Ctrl-C stops all")
                ended = _wait(procs, stop)
    if ended is not None:
        err.print(f"[red]{ended} exited on its own: the cluster was stopped[/]")
        return 1
    err.print("stopped: every part, and the database")
    return 0


def _environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RECON_DB_URL", "RECON_SETTINGS")}
    # The workers tick the watcher (a periodic task), so the dashboard does not.
    return env | {
        "RECON_DB_URL": url,
        "RECON_BATCH_RUNNER": "procrastinate",
        "RECON_WATCH_EMBEDDED": "false",
    }


def _commands(args: argparse.Namespace) -> dict[str, list[str]]:
    recon = [sys.executable, "-m", "engine.cli"]
    # A tick a minute: the month closing now is watched from the first minute on (each
    # tick checks only the collection days not checked yet, so later ones are cheap).
    watch = ["--watch", "--watch-every", "60"]
    worker = [*recon, "worker", "--concurrency", str(args.concurrency), *watch]
    commands = {f"worker {n}": worker for n in range(1, args.workers + 1)}
    commands["api"] = [*recon, "api", "--port", str(args.api_port)]
    commands["dashboard"] = [
        sys.executable, "-m", "streamlit", "run", str(_ROOT / "dashboard" / "app.py"),
        "--server.address", "127.0.0.1", "--server.port", str(args.dashboard_port),
        "--server.headless", "true",
    ]  # fmt: skip
    return commands


@contextmanager
def _parts(
    commands: dict[str, list[str]], env: dict[str, str]
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start every part; on exit, SIGTERM them all, then wait (kill the stragglers)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            procs[name] = subprocess.Popen(command, cwd=_ROOT, env=env)
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(procs: dict[str, subprocess.Popen[bytes]], stop: threading.Event) -> str | None:
    """Until ``stop`` or a part exits; the part's name in that case."""
    while not stop.wait(0.5):
        for name, proc in procs.items():
            if proc.poll() is not None:
                return name
    return None
