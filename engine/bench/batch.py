"""Batch runner suite: overhead per item against a bare thread pool, and I/O-bound speed-up.

- ``overhead_per_item_us`` / ``threadpool_per_item_us``: wall time per no-op item,
  submit to drained, of our runner (recording to a temporary SQLite file) and of a
  bare :class:`~concurrent.futures.ThreadPoolExecutor`, same concurrency, same run;
  ``overhead_ratio`` is their quotient (target <= 1.5, and < 100 us per item).
- ``speedup_at_N``: items that wait 20 ms (simulated source latency) run at
  concurrency 1 over concurrency N (target >= 0.85 * N).

Each timing is the median of the repetitions after a warm-up; ``*_spread`` is
their max - min.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ..batch import BatchRunner
from ..cancel import CancelToken
from ..settings import BatchSettings, StorageSettings
from ..storage import Storage
from . import measure

LATENCY_S = 0.02
CONCURRENCY = 5  # the seed's default maxConcurrentJobs, for the overhead comparison
Execute = Callable[[Mapping[str, Any], CancelToken], Any]


def run(*, quick: bool) -> dict[str, float]:
    noop_items, io_items, repeats = (2_000, 40, 2) if quick else (10_000, 100, 3)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(StorageSettings(db_url=f"sqlite:///{Path(tmp) / 'bench.db'}"))
        try:
            ours, ours_spread = _runner_seconds(storage, _noop, noop_items, CONCURRENCY, repeats)
            pool, pool_spread = _pool_seconds(noop_items, CONCURRENCY, repeats)
            io = {c: _runner_seconds(storage, _io, io_items, c, repeats)[0] for c in (1, 5, 10, 20)}
        finally:
            storage.close()
    return {
        "overhead_per_item_us": ours / noop_items * 1e6,
        "overhead_per_item_us_spread": ours_spread / noop_items * 1e6,
        "threadpool_per_item_us": pool / noop_items * 1e6,
        "threadpool_per_item_us_spread": pool_spread / noop_items * 1e6,
        "overhead_ratio": ours / pool,
        "speedup_at_5": io[1] / io[5],
        "speedup_at_10": io[1] / io[10],
        "speedup_at_20": io[1] / io[20],
    }


def _noop(spec: Mapping[str, Any], token: CancelToken) -> None:
    return None


def _io(spec: Mapping[str, Any], token: CancelToken) -> None:
    token.wait(LATENCY_S)


def _runner_seconds(
    storage: Storage, execute: Execute, n: int, concurrency: int, repeats: int
) -> tuple[float, float]:
    """Median time (and spread) to submit ``n`` items and drain them on a started runner.

    The runner is long-lived in the console, so its threads start before the timing.
    """
    runner = BatchRunner(
        BatchSettings(max_concurrent_jobs=concurrency), storage=storage, execute=execute
    )
    runner.start()

    def batch(size: int) -> None:
        runner.submit([{"n": i} for i in range(size)], name="bench")
        runner.run(until_idle=True)

    try:
        return _median(repeats, lambda: batch(n), warm_up=lambda: batch(2 * concurrency))
    finally:
        runner.close()


def _pool_seconds(n: int, concurrency: int, repeats: int) -> tuple[float, float]:
    """The same on a bare thread pool (its threads started too)."""
    token = CancelToken()

    def batch(size: int) -> None:
        wait([pool.submit(_noop, {"n": i}, token) for i in range(size)])

    with ThreadPoolExecutor(concurrency) as pool:
        return _median(repeats, lambda: batch(n), warm_up=lambda: batch(2 * concurrency))


def _median(
    repeats: int, work: Callable[[], None], *, warm_up: Callable[[], None]
) -> tuple[float, float]:
    """Median seconds of ``repeats`` runs of ``work`` after ``warm_up``, and their spread."""
    warm_up()
    return measure(work, repeat=repeats, warmup=0)
