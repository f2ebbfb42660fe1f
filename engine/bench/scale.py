"""Scale suite: month-end work through 1, 2 and 4 ``recon worker`` processes on PostgreSQL.

The items are the district replays of a whole month-end (May 2025, the 130
districts of the simulator, 4 when quick; 20 ms of latency per export request:
I/O-bound work), the same districts and seed for every configuration, each on a
new database of one PostgreSQL server (a throwaway server, or the server of
``--db`` when it is PostgreSQL). Each worker process runs one item at a time.
The workers start, are seen alive and run warm-up items of another month before
the clock starts (as the thread runner warms up in this process), so a timing
is submit to the batch's last item recorded. Each worker still fetches the
month's day summaries once for itself (the thread runner shares them): about a
third of a second per worker that does not shrink with more workers. Rounds (2;
1 when quick) give each configuration a turn; figures are medians, with
``*_spread`` (max - min) beside each timing.

- ``speedup_at_2`` / ``speedup_at_4``: seconds with one worker over seconds with
  2 and 4 (targets >= 1.7 and >= 3.4);
- ``per_item_overhead_ms``: what the procrastinate runner adds per item over the
  thread runner on the same items, one at a time each ((one worker's seconds -
  the thread runner's) / items);
- ``cross_process_staleness_s``: the freshness suite on the same server (target <= 2).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from engine.app import queries
from engine.app.console import Console
from engine.bench import freshness, paired_ratio, summary
from engine.errors import EngineError
from engine.settings import Settings
from engine.sources.sim import DISTRICTS
from engine.store.pg import is_postgres, scratch_database
from engine.store.pgserver import throwaway_postgres

MONTH = "2025-05"
WARM_UP_MONTH = "2025-04"
LATENCY_MS = 20.0
WORKERS = (1, 2, 4)
DEADLINE_S = 600.0  # a configuration that takes longer fails the suite
_ROOT = Path(__file__).resolve().parents[2]

Progress = Callable[[str, int, int], None]


def run(
    *, quick: bool, db_url: str | None = None, on_progress: Progress | None = None
) -> dict[str, float]:
    districts = list(DISTRICTS[:4] if quick else DISTRICTS)  # a month-end: 130 districts
    rounds = 1 if quick else 2
    report = on_progress or (lambda what, done, total: None)
    steps = rounds * (len(WORKERS) + 1) + 1
    times: dict[int, list[float]] = {count: [] for count in (0, *WORKERS)}  # 0: threads
    with _server(db_url) as server:
        for r in range(rounds):  # a round gives each configuration a turn: same machine
            for n, count in enumerate(times):
                report(f"round {r + 1}: {count or 'threads'}", r * len(times) + n, steps)
                measure = _workers_seconds if count else _threads_seconds
                times[count].append(measure(server, districts, count))
        report("freshness", steps - 1, steps)
        staleness = freshness.run(quick=quick, db_url=server)
    report("done", steps, steps)
    fields = {"items": float(len(districts)), "rounds": float(rounds)}
    for count, seconds in times.items():
        name = f"workers_{count}_s" if count else "threads_s"
        fields[name], fields[f"{name}_spread"] = summary(seconds)
    overhead = [(w - t) / len(districts) * 1000 for w, t in zip(times[1], times[0], strict=True)]
    return fields | {
        "speedup_at_2": paired_ratio(times[1], times[2]),
        "speedup_at_4": paired_ratio(times[1], times[4]),
        "per_item_overhead_ms": statistics.median(overhead),
        "cross_process_staleness_s": staleness["cross_process_staleness_s"],
    }


@contextmanager
def _server(db_url: str | None) -> Iterator[str]:
    """The URL of a PostgreSQL server's database to make scratch databases beside."""
    if db_url is not None and is_postgres(db_url):
        yield db_url
        return
    with throwaway_postgres() as server:
        yield server.url


def _settings(url: str, runner: str) -> Settings:
    return (
        Settings()
        .with_values("storage", db_url=url)
        .with_values("source", latency_ms=LATENCY_MS)
        .with_values("batch", runner=runner, max_concurrent_jobs=max(WORKERS))
        .with_values("watch", embedded=False)
    )


def _threads_seconds(server: str, districts: list[str], _count: int) -> float:
    """The thread runner, one item at a time, in this process."""
    with scratch_database(server, prefix="recon_bench_scale") as url:
        console = Console(_settings(url, "threads"))
        try:
            one_at_a_time = {"maxConcurrentJobs": 1}
            console.start_batch(WARM_UP_MONTH, districts=_warm_up(1), config=one_at_a_time)
            console.batch.run(until_idle=True)
            started = time.perf_counter()
            console.start_batch(MONTH, districts=districts, config=one_at_a_time)
            console.batch.run(until_idle=True)
            return time.perf_counter() - started
        finally:
            console.close()


def _workers_seconds(server: str, districts: list[str], count: int) -> float:
    """``count`` worker processes, one item at a time each; submitted from this process."""
    with scratch_database(server, prefix="recon_bench_scale") as url, ExitStack() as stack:
        console = Console(_settings(url, "procrastinate"))
        stack.callback(console.close)
        for _ in range(count):
            stack.enter_context(_worker(url))
        _wait(lambda: _alive(console) >= count, f"{count} workers to start")
        _run_on_workers(console, WARM_UP_MONTH, _warm_up(count))
        started = time.perf_counter()
        _run_on_workers(console, MONTH, districts)
        return time.perf_counter() - started


def _run_on_workers(console: Console, month: str, districts: list[str]) -> None:
    result = console.start_batch(month, districts=districts)
    _wait(lambda: console.batch.progress(result.batch_id).done, f"the batch of {month} to end")


def _warm_up(count: int) -> list[str]:
    """Two items per worker of another month: each worker (one item at a time) takes at
    least one, so its first item's costs (imports, connections, the source's first
    fetches: about half a second) are paid before the clock starts, as in this process
    for the thread runner."""
    return list(DISTRICTS[: 2 * count])


def _alive(console: Console) -> int:
    return sum(1 for w in queries.workers_view(console) if w.state == "alive")


@contextmanager
def _worker(url: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env |= {
        "RECON_DB_URL": url,
        "RECON_BATCH_RUNNER": "procrastinate",
        "RECON_SOURCE_LATENCY_MS": str(LATENCY_MS),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--concurrency", "1"],
        cwd=_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            raise EngineError(f"scale benchmark: waited {DEADLINE_S:.0f} s for {what}")
        time.sleep(0.05)  # polls the store (not too often: the workers need the CPU)
