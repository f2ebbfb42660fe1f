"""Benchmark suites for ``recon bench``.

Each suite is a module in this package with ``run(*, quick: bool) -> dict[str, Any]``
returning the suite's JSON fields (numbers; e2e also its ``steps``). Timings are
medians of several repetitions after a warm-up (:func:`alternate`), with their
spread (max - min) in a
``<field>_spread`` field; ratios compare against a baseline measured in the
same process and run. ``quick`` runs small sizes in seconds (the test suite's
smoke run); :data:`TARGETS` are judged on full runs only.

Results are stored in the ``bench_results`` table (:func:`store`), one row per
suite, so that the dashboard shows them beside its own before/after runs;
:mod:`engine.bench.against` compares a run with a stored one.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import operator
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.store.bench import BenchStore, Transactions

SUITES = ("e2e", "storage", "cache", "batch", "monitor", "freshness", "scale")
PAGES_SUITE = "pages"
"""Not a ``recon bench`` suite: every dashboard page's time to render in headless Chromium
on a 130-district June month, stored by tests/dashboard/test_e2e_pages.py."""


@dataclass(frozen=True)
class Target:
    """A field's target, e.g. ``speedup >= 10``."""

    op: str  # one of ">=", "<=", "<"
    value: float

    def met(self, measured: float) -> bool:
        compare = {">=": operator.ge, "<=": operator.le, "<": operator.lt}[self.op]
        return bool(compare(measured, self.value))

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


# From the issues that asked for each suite.
TARGETS: Mapping[str, Mapping[str, Target]] = {
    "e2e": {"speedup": Target(">=", 10), "optimized_vs_lower_bound": Target("<=", 1.3)},
    "storage": {"write_speedup": Target(">=", 50), "read_speedup": Target(">=", 10)},
    "cache": {
        "hit_p50_us": Target("<", 5),
        "overhead_vs_cachetools": Target("<=", 3),
        "workload_hit_rate": Target(">=", 0.9),
    },
    "batch": {
        "overhead_ratio": Target("<=", 1.5),
        "overhead_per_item_us": Target("<", 100),
        "speedup_at_5": Target(">=", 0.85 * 5),
        "speedup_at_10": Target(">=", 0.85 * 10),
        "speedup_at_20": Target(">=", 0.85 * 20),
    },
    "monitor": {"overhead_vs_prometheus": Target("<=", 2)},
    "freshness": {"cross_process_staleness_s": Target("<=", 2)},
    "scale": {
        "speedup_at_2": Target(">=", 1.7),
        "speedup_at_4": Target(">=", 3.4),
        "cross_process_staleness_s": Target("<=", 2),
    },
    PAGES_SUITE: {"slowest_page_s": Target("<", 2), "slowest_load_s": Target("<", 2)},
}


def judged(
    results: Mapping[str, Mapping[str, Any]], *, judge: bool
) -> list[tuple[str, str, str, str, str]]:
    """(suite, field, value, target, met?) for every field of ``results`` (suite ->
    fields): the value as text, the target ("" without one), met? "yes", "no", or ""
    without a target or when not ``judge`` (quick runs)."""
    found = []
    for suite, fields in results.items():
        for field, value in numbers(fields).items():
            target = TARGETS.get(suite, {}).get(field)
            met = "" if target is None or not judge else ("yes" if target.met(value) else "no")
            found.append((suite, field, f"{value:.4g}", str(target or ""), met))
    return found


def numbers(fields: Mapping[str, Any]) -> dict[str, float]:
    """The numeric figures of a suite's result (not its ``steps`` or ``machine``)."""
    return {
        k: float(v)
        for k, v in fields.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def alternate(
    works: Sequence[Callable[[], object]],
    *,
    repeat: int = 5,
    warmup: int = 1,
    at_least: float = 0.0,
) -> list[list[float]]:
    """Seconds of one call of each of ``works`` in each of ``repeat`` rounds after
    ``warmup`` rounds. A round gives each work a turn, so that all of them see the same
    machine (its speed drifts); a turn lasts ``at_least`` seconds (see :func:`seconds`).
    See :func:`summary` and :func:`paired_ratio`."""
    for _ in range(warmup):
        for work in works:
            work()
    times: list[list[float]] = [[] for _ in works]
    for _ in range(repeat):
        for work, out in zip(works, times, strict=True):
            out.append(seconds(work, at_least=at_least))
    return times


def seconds(work: Callable[[], object], *, at_least: float = 0.0) -> float:
    """Wall seconds of one call, each call starting without the garbage of the one
    before. The calls go on until they add up to ``at_least`` seconds and their mean is
    returned: a call of a tenth of a second takes up to a third longer or shorter from
    one moment to the next on a shared machine, a mean over half a second much less."""
    total, calls = 0.0, 0
    while calls == 0 or total < at_least:
        gc.collect()
        started = time.perf_counter()
        work()
        total += time.perf_counter() - started
        calls += 1
    return total / calls


def summary(times: Sequence[float]) -> tuple[float, float]:
    """Median and spread (max - min)."""
    return statistics.median(times), max(times) - min(times)


def paired_ratio(top: Sequence[float], bottom: Sequence[float]) -> float:
    """The median of ``top[i] / bottom[i]``: of figures measured in the same round, which
    saw the machine at the same moment. (A slow stretch of the machine that falls on
    one figure of a round more than on the others still shows; one that lasts a round
    cancels out, as it would not in the ratio of the medians.)"""
    return statistics.median(a / b for a, b in zip(top, bottom, strict=True))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_suite(
    name: str,
    *,
    quick: bool,
    on_progress: Callable[[str, int, int], None] | None = None,
    db_url: str | None = None,
) -> dict[str, Any]:
    """Run one suite; ``on_progress(what, done, total)`` reaches the suites that report
    progress (e2e), ``db_url`` (the database the command was given) the suites that
    can run on its server (freshness, on PostgreSQL); the others run without."""
    if name not in SUITES:
        raise ValueError(name)
    module = importlib.import_module(f"engine.bench.{name}")
    accepts = inspect.signature(module.run).parameters
    options: dict[str, Any] = {}
    if on_progress is not None and "on_progress" in accepts:
        options["on_progress"] = on_progress
    if db_url is not None and "db_url" in accepts:
        options["db_url"] = db_url
    result: dict[str, Any] = module.run(quick=quick, **options)
    return result


def store(
    storage: Transactions,
    suite: str,
    result: Mapping[str, Any],
    *,
    quick: bool,
    when: datetime,
) -> int:
    """Record one suite's result (with the machine) in ``bench_results``; its id."""
    return BenchStore(storage).add(suite, {**result, "machine": machine()}, quick=quick, when=when)


__all__ = [
    "PAGES_SUITE",
    "SUITES",
    "TARGETS",
    "Target",
    "alternate",
    "judged",
    "machine",
    "numbers",
    "paired_ratio",
    "run_suite",
    "store",
]
