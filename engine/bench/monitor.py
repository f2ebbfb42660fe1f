"""Monitor suite: what timing one operation costs.

Three loops of the same length, run in turns in one process:

- ``perf_counter_pair_ns``: two bare ``time.perf_counter()`` calls, the floor;
- ``prometheus_observe_ns``: the same operation timed the prometheus_client way,
  a ``perf_counter()`` pair plus ``Histogram.observe`` (fresh ``CollectorRegistry``);
- ``timed_op_ns``: ``with monitor.timed(op): pass`` on a memory-only monitor.

``overhead_vs_prometheus`` is ``timed_op_ns / prometheus_observe_ns`` (target: at most 2).
Each figure is the median per-call cost over the repetitions, after a warm-up;
``*_spread`` is their max - min.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

from engine.monitor.core import Monitor
from engine.settings import MonitorSettings


def run(*, quick: bool) -> dict[str, float]:
    calls = 20_000 if quick else 200_000
    repetitions = 5 if quick else 9
    loops = _loops(calls)
    for loop in loops.values():  # warm-up: caches, the monitor's first series, allocations
        loop()
    timings: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repetitions):
        for name, loop in loops.items():
            started = time.perf_counter_ns()
            loop()
            timings[name].append((time.perf_counter_ns() - started) / calls)
    result = {name: statistics.median(values) for name, values in timings.items()}
    result.update({f"{name}_spread": max(v) - min(v) for name, v in timings.items()})
    result["overhead_vs_prometheus"] = result["timed_op_ns"] / result["prometheus_observe_ns"]
    # the ratio's own spread, of the repetitions' ratios: what `recon bench --against` allows
    ratios = [
        t / p for t, p in zip(timings["timed_op_ns"], timings["prometheus_observe_ns"], strict=True)
    ]
    result["overhead_vs_prometheus_spread"] = max(ratios) - min(ratios)
    return result


def _loops(calls: int) -> dict[str, Callable[[], None]]:
    monitor = Monitor(MonitorSettings(), resource_reader=dict)
    histogram = Histogram("bench_op_seconds", "bench operation", registry=CollectorRegistry())
    clock = time.perf_counter

    def pair() -> None:
        for _ in range(calls):
            started = clock()
            clock() - started

    def prometheus() -> None:
        for _ in range(calls):
            started = clock()
            histogram.observe(clock() - started)

    def timed() -> None:
        for _ in range(calls):
            with monitor.timed("bench.op"):
                pass

    return {"perf_counter_pair_ns": pair, "prometheus_observe_ns": prometheus, "timed_op_ns": timed}
