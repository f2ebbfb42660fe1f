"""Batch runner suite: overhead per item against a bare thread pool, and I/O-bound speed-up.

- ``overhead_per_item_us`` / ``threadpool_per_item_us``: wall time per no-op item,
  submit to drained, of our runner (recording to a temporary SQLite file) and of a
  bare :class:`~concurrent.futures.ThreadPoolExecutor`, same concurrency, same run;
  ``overhead_ratio`` is their quotient, the median of the rounds' (target <= 1.5,
  and < 100 us per item).
- ``speedup_at_N``: items that wait 20 ms (simulated source latency) run at
  concurrency 1 over concurrency N (target >= 0.85 * N).

Each timing is the median of the repetitions after a warm-up (ours and the
pool's alternate, each after a garbage collection); ``*_spread`` is their max - min.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from engine.app.console import open_storage
from engine.batch.runner import BatchRunner
from engine.bench import alternate, paired_ratio, seconds, summary
from engine.cancel import CancelToken
from engine.settings import BatchSettings, StorageSettings
from engine.store.batches import SqlBatchStore
from engine.store.storage import Storage

LATENCY_S = 0.02
CONCURRENCY = 5  # the seed's default maxConcurrentJobs, for the overhead comparison
Execute = Callable[[Mapping[str, Any], CancelToken], Any]


def run(*, quick: bool) -> dict[str, float]:
    noop_items, io_items, repeats = (2_000, 40, 2) if quick else (10_000, 100, 5)
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(StorageSettings(db_url=f"sqlite:///{Path(tmp) / 'bench.db'}"))
        try:
            ours_t, pool_t = _overhead(storage, noop_items, repeats)
            io = {c: _io_seconds(storage, io_items, c, repeats) for c in (1, 5, 10, 20)}
        finally:
            storage.close()
    (ours, ours_spread), (pool, pool_spread) = summary(ours_t), summary(pool_t)
    return {
        "overhead_per_item_us": ours / noop_items * 1e6,
        "overhead_per_item_us_spread": ours_spread / noop_items * 1e6,
        "threadpool_per_item_us": pool / noop_items * 1e6,
        "threadpool_per_item_us_spread": pool_spread / noop_items * 1e6,
        "overhead_ratio": paired_ratio(ours_t, pool_t),
        "speedup_at_5": io[1] / io[5],
        "speedup_at_10": io[1] / io[10],
        "speedup_at_20": io[1] / io[20],
    }


def _noop(spec: Mapping[str, Any], token: CancelToken) -> None:
    return None


def _io(spec: Mapping[str, Any], token: CancelToken) -> None:
    token.wait(LATENCY_S)


def _overhead(storage: Storage, n: int, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of each repetition of ``n`` no-op items on our runner and on a bare pool.

    Both are long-lived, so their threads start before the timing; their
    repetitions alternate so that both see the same machine.
    """
    with _runner(storage, _noop, CONCURRENCY) as ours, ThreadPoolExecutor(CONCURRENCY) as pool:
        token = CancelToken()

        def bare(size: int) -> None:
            wait([pool.submit(_noop, {"n": i}, token) for i in range(size)])

        for work in (ours, bare):
            work(2 * CONCURRENCY)  # warm-up
        ours_t, bare_t = alternate([lambda: ours(n), lambda: bare(n)], repeat=repeats, warmup=0)
    return ours_t, bare_t


def _io_seconds(storage: Storage, n: int, concurrency: int, repeats: int) -> float:
    """Median seconds of ``n`` items waiting 20 ms each at ``concurrency``."""
    with _runner(storage, _io, concurrency) as batch:
        batch(2 * concurrency)
        return summary([seconds(lambda: batch(n)) for _ in range(repeats)])[0]


@contextlib.contextmanager
def _runner(
    storage: Storage, execute: Execute, concurrency: int
) -> Iterator[Callable[[int], None]]:
    """A started runner, as a function that submits ``size`` items and drains them."""
    runner = BatchRunner(
        BatchSettings(max_concurrent_jobs=concurrency),
        store=SqlBatchStore(storage),
        execute=execute,
    )
    runner.start()

    def batch(size: int) -> None:
        runner.submit([{"n": i} for i in range(size)], name="bench")
        runner.run(until_idle=True)

    try:
        yield batch
    finally:
        runner.close()
