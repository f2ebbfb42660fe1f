"""One step of the e2e suite in its own process: ``python -m engine.bench.replay JOB``.

``JOB`` is JSON: ``step`` (one of :data:`engine.bench.e2e.STEPS`), ``db`` (a new
SQLite file), ``calendar``, ``latency_ms``, ``concurrency`` and ``districts``.
Prints one JSON line per finished district (``{"done": n, "total": t}``) and
last ``{"result": ...}``: seconds, checks, requests, round trips, peak memory of
this process while it replayed, and each job's outcome (steps must agree).

A process per step keeps each step's memory its own and every step equally cold;
a small replay on another file warms imports and first-use caches first.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from engine.app.console import Console
from engine.batch.runner import FINISHED
from engine.bench.e2e import MONTH, SEED
from engine.domain.models import month_end, next_month
from engine.errors import ConfigError
from engine.settings import OPTIMIZATIONS, Settings
from engine.sources.sim import DISTRICTS, Simulator, SimulatorSource

_RSS_INTERVAL_S = 0.02
_WARM_UP_DISTRICTS = 2

Report = Callable[[int, int], None]


def step_settings(base: Settings, step: str, db: str) -> Settings:
    """``base`` with the storage parts of ``step``: naive, then each optimization added."""
    if step == "naive":
        return base.with_values("storage", db_url=f"sqlite:///{db}", mode="naive")
    if step not in OPTIMIZATIONS:
        raise ConfigError("step", step, f"expected naive or one of {', '.join(OPTIMIZATIONS)}")
    parts = ",".join(OPTIMIZATIONS[: OPTIMIZATIONS.index(step) + 1])
    return base.with_values(
        "storage", db_url=f"sqlite:///{db}", mode="optimized", optimizations=parts
    )


def replay_step(job: Mapping[str, Any], report: Report | None = None) -> dict[str, Any]:
    """Warm up, then the timed replay of ``job`` (see the module's docstring)."""
    base = (
        Settings()
        .with_values(
            "source", seed=SEED, latency_ms=job["latency_ms"], calendar_file=job["calendar"]
        )
        .with_values("batch", max_concurrent_jobs=job["concurrency"])
    )
    warm = Path(job["db"]).with_suffix(".warm.db")
    _replay(step_settings(base, job["step"], str(warm)), list(DISTRICTS[:_WARM_UP_DISTRICTS]))
    return _replay(step_settings(base, job["step"], job["db"]), list(job["districts"]), report)


def _replay(
    settings: Settings, districts: list[str], report: Report | None = None
) -> dict[str, Any]:
    """One replay on a fresh database file, timed from submit to the last write."""
    console = Console(settings)
    try:
        sim = console.source.sim if isinstance(console.source, SimulatorSource) else None
        if sim is None:
            raise ConfigError("source", settings.source.source, "the e2e suite needs the simulator")
        _build_world(sim, districts)
        _follow(console, len(districts), report)
        gc.collect()
        with _PeakRss() as rss:
            started = time.perf_counter()
            console.start_batch(MONTH, districts=districts)
            console.batch.run(until_idle=True)
            console.storage.flush()
            seconds = time.perf_counter() - started
        jobs = console.storage.jobs(month=MONTH)
    finally:
        console.close()
    return {
        "seconds": seconds,
        "checks": sum(j.checks for j in jobs),
        "requests": sim.requests(),
        "db_roundtrips": console.storage.roundtrips,
        "peak_rss_mb": rss.peak_mb,
        "outcomes": [
            [j.district, j.status.value, j.reason, str(j.final_as_of), j.checks] for j in jobs
        ],
    }


def _build_world(sim: Simulator, districts: list[str]) -> None:
    """Have the simulated dashboard generate its districts' figures before the clock starts.

    A real dashboard has its data before we ask; the simulator generates it on first
    use, in this process, which would charge the first fetches of either mode with
    the simulated server's start-up. Rendering and publishing exports stay timed.
    """
    for month in (MONTH, next_month(MONTH)):
        for district in districts:
            sim.clubs(district, month, month_end(month))


def _follow(console: Console, total: int, report: Report | None) -> None:
    """Report ``(done, total)`` as the replay's districts finish."""
    if report is None:
        return
    done = 0
    lock = threading.Lock()

    def listener(event: Mapping[str, Any]) -> None:
        nonlocal done
        if event["type"] in FINISHED:
            with lock:  # held while reporting, so that the counts arrive in order
                done += 1
                report(done, total)

    console.batch.listen(listener)


class _PeakRss:
    """Samples this process's resident memory in a thread; ``peak_mb`` once exited."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self.peak_mb = 0.0

    def __enter__(self) -> _PeakRss:
        self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def _sample(self) -> None:
        while not self._stop.wait(_RSS_INTERVAL_S):
            self._read()

    def _read(self) -> None:
        self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)


def _print(message: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    result = replay_step(job, lambda done, total: _print({"done": done, "total": total}))
    _print({"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
