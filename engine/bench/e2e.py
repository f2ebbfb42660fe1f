"""End-to-end suite: one month-end replay in naive mode and in optimized mode, same seed.

Each mode replays the closing period of :data:`MONTH` for the same districts on
the simulator (latency per export request, a closing calendar of ``closing_days``
after the month end), through the composition root as a user's run would go:
``Console(settings)``, ``start_batch`` and ``batch.run(until_idle=True)``, each
mode on a fresh SQLite file.

- naive: storage mode ``naive``: sequential, every check fetches the district
  summary again, one commit per write, no caches;
- optimized: ``concurrency`` districts at once, one district summary per
  collection date shared by every district, batched and deferred writes, caches.

Fields: ``naive_s`` and ``optimized_s`` (from ``start_batch`` until every write
is in the database), ``speedup`` (their ratio; target >= 10 at concurrency 5),
``checks`` (the same in both modes, or the suite fails), ``io_lower_bound_s``
(the optimized mode's export requests times the latency, divided by the
concurrency: what the run would take if only the waiting counted),
``optimized_vs_lower_bound`` (target <= 1.3), ``*_db_roundtrips`` (statements
sent to the database) and ``*_peak_rss_mb`` (peak resident memory of this
process while the mode ran, sampled with psutil).
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

from engine.app.console import Console
from engine.batch.runner import FINISHED
from engine.domain.models import month_end, next_month
from engine.errors import ConfigError, EngineError
from engine.settings import Settings
from engine.sources.sim import DISTRICTS, Simulator, SimulatorSource

MONTH = "2025-05"  # not June: its 30-day window would outlast any short closing period
SEED = 42


@dataclass(frozen=True)
class Size:
    """One workload: the arguments of :func:`compare`."""

    districts: int
    latency_ms: float
    closing_days: int
    concurrency: int


FULL = Size(districts=130, latency_ms=20.0, closing_days=10, concurrency=5)
QUICK = Size(districts=8, latency_ms=2.0, closing_days=3, concurrency=5)
WARM_UP = replace(QUICK, districts=2, latency_ms=0.0)  # imports, first-use caches
_RSS_INTERVAL_S = 0.02
_TIMINGS = ("naive_s", "optimized_s")  # reported with their spread over the repetitions

Progress = Callable[[str, int, int], None]


def run(*, quick: bool) -> dict[str, float]:
    """The suite: a warm-up replay, then the median of several naive/optimized pairs."""
    size = asdict(QUICK if quick else FULL)
    compare(**asdict(WARM_UP))
    results = [compare(**size) for _ in range(2 if quick else 3)]
    out = {field: statistics.median(r[field] for r in results) for field in results[0]}
    for field in _TIMINGS:
        values = [r[field] for r in results]
        out[f"{field}_spread"] = max(values) - min(values)
    out["repetitions"] = float(len(results))
    return out


def compare(
    *,
    districts: int,
    latency_ms: float,
    closing_days: int,
    concurrency: int,
    on_progress: Progress | None = None,
) -> dict[str, float]:
    """Replay the same month-end in naive then optimized mode; the e2e fields of one pair.

    Blocks until both replays are done (seconds to minutes: call it from a
    background thread in a UI). Each mode gets a fresh simulator and database
    file in a temporary folder, removed afterwards.

    :param districts: how many of the simulator's districts (numbered ones first).
    :param latency_ms: simulated latency of each export request.
    :param closing_days: days after the month end the closing period lasts (0-62).
    :param concurrency: districts the optimized mode works at once (1-20).
    :param on_progress: called as ``on_progress(mode, done, total)`` when a mode
        starts and each time one of its districts finishes, from worker threads.

    Without latency there is no I/O lower bound to compare with:
    ``optimized_vs_lower_bound`` is then left out (every figure is a finite number).
    """
    chosen = _districts(districts)
    with tempfile.TemporaryDirectory(prefix="recon-bench-e2e-") as tmp:
        folder = Path(tmp)
        calendar = folder / "calendar.json"
        closing = month_end(MONTH) + timedelta(days=closing_days)
        calendar.write_text(json.dumps({MONTH: closing.isoformat()}), encoding="utf-8")
        base = (
            Settings()
            .with_values("source", seed=SEED, latency_ms=latency_ms, calendar_file=str(calendar))
            .with_values("batch", max_concurrent_jobs=concurrency)
        )
        naive = _replay(base, folder, "naive", chosen, on_progress)
        optimized = _replay(base, folder, "optimized", chosen, on_progress)
    if naive.outcomes != optimized.outcomes:
        raise EngineError(f"naive and optimized replays of {MONTH} disagree: the benchmark is void")
    bound = optimized.requests * latency_ms / 1000 / base.batch.max_concurrent_jobs
    ratio = {"optimized_vs_lower_bound": optimized.seconds / bound} if bound else {}
    return {
        "naive_s": naive.seconds,
        "optimized_s": optimized.seconds,
        "speedup": naive.seconds / optimized.seconds,
        "checks": float(optimized.checks),
        "io_lower_bound_s": bound,
        **ratio,
        "naive_db_roundtrips": float(naive.roundtrips),
        "optimized_db_roundtrips": float(optimized.roundtrips),
        "naive_peak_rss_mb": naive.peak_rss_mb,
        "optimized_peak_rss_mb": optimized.peak_rss_mb,
        "naive_requests": float(naive.requests),
        "optimized_requests": float(optimized.requests),
        "districts": float(len(chosen)),
    }


def _districts(count: int) -> list[str]:
    if not 1 <= count <= len(DISTRICTS):
        raise ConfigError("districts", count, f"expected 1-{len(DISTRICTS)}, as the simulator has")
    return list(DISTRICTS[:count])


@dataclass(frozen=True)
class _Replay:
    seconds: float
    checks: int
    requests: int
    roundtrips: int
    peak_rss_mb: float
    outcomes: tuple[tuple[Any, ...], ...]


def _replay(
    base: Settings, folder: Path, mode: str, districts: list[str], on_progress: Progress | None
) -> _Replay:
    """One mode's replay on a fresh database file, timed from submit to the last write."""
    settings = base.with_values("storage", db_url=f"sqlite:///{folder / mode}.db", mode=mode)
    console = Console(settings)
    try:
        sim = console.source.sim if isinstance(console.source, SimulatorSource) else None
        if sim is None:
            raise ConfigError("source", settings.source.source, "the e2e suite needs the simulator")
        _build_world(sim)
        _follow(console, mode, len(districts), on_progress)
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
    return _Replay(
        seconds=seconds,
        checks=sum(j.checks for j in jobs),
        requests=sim.requests(),
        roundtrips=console.storage.roundtrips,
        peak_rss_mb=rss.peak_mb,
        outcomes=tuple(
            (j.district, j.status.value, j.reason, j.final_as_of, j.checks) for j in jobs
        ),
    )


def _build_world(sim: Simulator) -> None:
    """Have the simulated dashboard generate its districts' figures before the clock starts.

    A real dashboard has its data before we ask; the simulator generates it on first
    use, in this process, which would charge the first fetches of either mode with
    the simulated server's start-up. Rendering and publishing exports stay timed.
    """
    for month in (MONTH, next_month(MONTH)):
        for district in DISTRICTS:
            sim.clubs(district, month, month_end(month))


def _follow(console: Console, mode: str, total: int, on_progress: Progress | None) -> None:
    """Report ``(mode, done, total)`` as the mode's districts finish."""
    if on_progress is None:
        return
    done = 0
    lock = threading.Lock()

    def listener(event: Mapping[str, Any]) -> None:
        nonlocal done
        if event["type"] in FINISHED:
            with lock:  # held while reporting, so that the counts arrive in order
                done += 1
                on_progress(mode, done, total)

    console.batch.listen(listener)
    on_progress(mode, 0, total)


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


__all__ = ["FULL", "MONTH", "QUICK", "Size", "compare", "run"]
