"""Benchmark suites for ``recon bench``.

Each suite is a module in this package with ``run(*, quick: bool) -> dict[str, float]``
returning the suite's JSON fields. Timings are medians of several repetitions
after a warm-up (:func:`measure`); ratios compare against a baseline measured
in the same process and run. ``quick`` runs small sizes in seconds (the test
suite's smoke run); targets are judged on full runs only.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

SUITES = ("e2e", "storage", "cache", "batch", "monitor")


def measure(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> tuple[float, float]:
    """Median and spread (max - min) in seconds of ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) - min(times)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_suite(name: str, *, quick: bool) -> dict[str, float]:
    if name not in SUITES:
        raise ValueError(name)
    module = importlib.import_module(f"engine.bench.{name}")
    result: dict[str, float] = module.run(quick=quick)
    return result
