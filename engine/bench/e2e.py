"""End-to-end suite: one month-end replay from naive to optimized, one step at a time, same seed.

Each step replays the closing period of :data:`MONTH` for the same districts on
the simulator (latency per export request, a closing calendar of ``closing_days``
after the month end), through the composition root as a user's run would go:
``Console(settings)``, ``start_batch`` and ``batch.run(until_idle=True)``, each
step on a fresh SQLite file **in its own process** (:mod:`engine.bench.replay`),
so that its peak memory is that step's alone. A step is a settings combination
(``storage.mode`` and ``storage.optimizations``, see
:meth:`~engine.settings.StorageSettings.parts`); :data:`STEPS` add one part each:

- ``naive``: sequential, every check fetches the district summary again, one
  commit per write, no caches;
- ``concurrency``: ``concurrency`` districts at once;
- ``shared_summary``: one district summary per collection date, shared by every district;
- ``batched_writes``: deferred writes committed in batches;
- ``caches``: the job store's read cache, the last entry kept between checks and
  parsed export rows reused: the optimized mode.

Fields: ``naive_s`` and ``optimized_s`` (from ``start_batch`` until every write
is in the database), ``steps`` (``{"step": name, "seconds": s}`` from naive to
optimized: the first is ``naive_s``, the last ``optimized_s``), ``speedup``
(their ratio; target >= 10 at concurrency 5), ``checks`` (the same in every
step, or the suite fails), ``io_lower_bound_s`` (the optimized mode's export
requests times the latency, divided by the concurrency: what the run would take
if only the waiting counted), ``optimized_vs_lower_bound`` (target <= 1.3),
``*_db_roundtrips`` (statements sent to the database) and ``*_peak_rss_mb``
(peak resident memory of the step's process while it replayed, sampled with psutil).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.domain.models import month_end
from engine.errors import ConfigError, EngineError
from engine.settings import OPTIMIZATIONS
from engine.sources.sim import DISTRICTS

MONTH = "2025-05"  # not June: its 30-day window would outlast any short closing period
SEED = 42
STEPS = ("naive", *OPTIMIZATIONS)
"""Step names, naive to optimized; each adds the optimization it names."""
STEP_LABELS = {
    "naive": "naive",
    "concurrency": "+ concurrency",
    "shared_summary": "+ one district summary per day",
    "batched_writes": "+ batched writes",
    "caches": "+ caches and row reuse (= optimized)",
}


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
_TIMINGS = ("naive_s", "optimized_s")  # reported with their spread over the repetitions
# (and so is the speed-up, for `recon bench --against`)

Progress = Callable[[str, int, int], None]
"""``(what, done, total)``."""


def repetitions(*, quick: bool) -> int:
    """How many naive-to-optimized runs :func:`run` takes the median of."""
    return 2 if quick else 3


def run(*, quick: bool, on_progress: Progress | None = None) -> dict[str, Any]:
    """The suite: the median of several runs of every step (each warmed up in its process).

    ``on_progress(what, done, total)`` counts districts over every run and step.
    """
    size = asdict(QUICK if quick else FULL)
    reps = repetitions(quick=quick)
    results = []
    for rep in range(reps):
        report = _overall(on_progress, rep, reps, size["districts"])
        results.append(compare(**size, on_progress=report))
    out: dict[str, Any] = {
        field: statistics.median(r[field] for r in results)
        for field, value in results[0].items()
        if isinstance(value, float)
    }
    for field in (*_TIMINGS, "speedup"):
        values = [r[field] for r in results]
        out[f"{field}_spread"] = max(values) - min(values)
    out["steps"] = [
        {"step": step, "seconds": statistics.median(r["steps"][i]["seconds"] for r in results)}
        for i, step in enumerate(STEPS)
    ]
    out["repetitions"] = float(reps)
    return out


def _overall(on_progress: Progress | None, rep: int, reps: int, districts: int) -> Progress:
    """A step's ``(step, done, total)`` as the progress of the whole suite."""
    total = reps * len(STEPS) * districts

    def report(step: str, done: int, _: int) -> None:
        if on_progress is not None:
            before = (rep * len(STEPS) + STEPS.index(step)) * districts
            on_progress(f"run {rep + 1} of {reps}: {STEP_LABELS[step]}", before + done, total)

    return report


def compare(
    *,
    districts: int,
    latency_ms: float,
    closing_days: int,
    concurrency: int,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay the same month-end once per step, naive to optimized; the e2e fields of one run.

    Blocks until every step is done (seconds to minutes: call it from a
    background thread in a UI). Each step runs in a new Python process with a
    fresh simulator and database file in a temporary folder, removed afterwards.

    :param districts: how many of the simulator's districts (numbered ones first).
    :param latency_ms: simulated latency of each export request.
    :param closing_days: days after the month end the closing period lasts (0-62).
    :param concurrency: districts the steps from ``concurrency`` on work at once (1-20).
    :param on_progress: called as ``on_progress(step, done, total)`` when a step
        starts and each time one of its districts finishes.

    Without latency there is no I/O lower bound to compare with:
    ``optimized_vs_lower_bound`` is then left out (every figure is a finite number).
    """
    chosen = _districts(districts)
    with tempfile.TemporaryDirectory(prefix="recon-bench-e2e-") as tmp:
        folder = Path(tmp)
        calendar = folder / "calendar.json"
        closing = month_end(MONTH) + timedelta(days=closing_days)
        calendar.write_text(json.dumps({MONTH: closing.isoformat()}), encoding="utf-8")
        job = {"calendar": str(calendar), "latency_ms": latency_ms, "concurrency": concurrency}
        steps = [
            _replay_in_process(
                {**job, "step": step, "db": str(folder / f"{step}.db")}, chosen, on_progress
            )
            for step in STEPS
        ]
    if any(s["outcomes"] != steps[0]["outcomes"] for s in steps):
        raise EngineError(f"the steps' replays of {MONTH} disagree: the benchmark is void")
    return _fields(steps, latency_ms=latency_ms, concurrency=concurrency)


def _fields(
    steps: Sequence[Mapping[str, Any]], *, latency_ms: float, concurrency: int
) -> dict[str, Any]:
    naive, optimized = steps[0], steps[-1]
    bound = optimized["requests"] * latency_ms / 1000 / concurrency
    ratio = {"optimized_vs_lower_bound": optimized["seconds"] / bound} if bound else {}
    return {
        "naive_s": naive["seconds"],
        "optimized_s": optimized["seconds"],
        "speedup": naive["seconds"] / optimized["seconds"],
        "checks": float(optimized["checks"]),
        "io_lower_bound_s": bound,
        **ratio,
        **{
            f"{mode}_{field}": float(step[field])
            for mode, step in (("naive", naive), ("optimized", optimized))
            for field in ("db_roundtrips", "peak_rss_mb", "requests")
        },
        "districts": float(len(naive["outcomes"])),
        "steps": [
            {"step": name, "seconds": s["seconds"]} for name, s in zip(STEPS, steps, strict=True)
        ],
    }


def _districts(count: int) -> list[str]:
    if not 1 <= count <= len(DISTRICTS):
        raise ConfigError("districts", count, f"expected 1-{len(DISTRICTS)}, as the simulator has")
    return list(DISTRICTS[:count])


def _replay_in_process(
    job: Mapping[str, Any], districts: list[str], on_progress: Progress | None
) -> dict[str, Any]:
    """Run one step in ``python -m engine.bench.replay``; its progress lines call
    ``on_progress``, its last line is the result."""
    step = str(job["step"])
    if on_progress is not None:
        on_progress(step, 0, len(districts))
    root = str(Path(__file__).resolve().parents[2])  # where ``engine`` is importable from
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "engine.bench.replay", json.dumps({**job, "districts": districts})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        result = _read_lines(child.stdout, step, on_progress)
        errors = child.stderr.read()
    if child.returncode != 0 or result is None:
        raise EngineError(f"the {step} step's replay failed: {errors.strip()[-2000:]}")
    return result


def _read_lines(lines: Any, step: str, on_progress: Progress | None) -> dict[str, Any] | None:
    result = None
    for line in lines:
        message = json.loads(line)
        if "result" in message:
            result = message["result"]
        elif on_progress is not None:
            on_progress(step, message["done"], message["total"])
    return result


__all__ = [
    "FULL",
    "MONTH",
    "QUICK",
    "STEPS",
    "STEP_LABELS",
    "Size",
    "compare",
    "repetitions",
    "run",
]
