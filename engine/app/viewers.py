"""Viewer load: N simulated dashboard/API readers on the shared console, for a while.

Each reader is a thread that does what a dashboard or API reader does, over
and over, through the read models and the console's cached getters: the
month's status, its jobs list, and one job's timeline. Their calls are
labelled ``origin="viewers"`` (:func:`engine.instrument.reads_for`), so the
monitor keeps them out of the engine's figures. The result says how many reads
were done, at what rate, and the read cache's hit rate during the load; then
one reader alone does the same reads for a moment through the read cache and
without it, for the figure without it. Started from a UI with
:func:`engine.app.actions.start_viewer_load` (a task of ``console.tasks``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from engine.app import queries
from engine.app.months import month_batch, month_status, status_of
from engine.app.tasks import Report
from engine.domain.models import validate_month
from engine.errors import ConfigError
from engine.instrument import reads_for

if TYPE_CHECKING:
    from engine.app.console import Console

__all__ = [
    "BASELINE_S",
    "READERS",
    "SECONDS",
    "VIEWERS",
    "ViewerLoad",
    "month_jobs",
    "run_viewer_load",
    "validate",
]

VIEWERS = "viewers"  # the monitor's origin label of the simulated readers' calls
READERS = (1, 100)  # readers allowed
SECONDS = (0.1, 600.0)  # duration allowed, seconds
BASELINE_S = 2.0  # at most this long, one reader without the read cache
_READS_PER_ROUND = 3  # month status, jobs list, a job's timeline
_REPORT_EVERY_S = 0.25


@dataclass(frozen=True)
class ViewerLoad:
    """What a viewer load did (the task's result, as a dict)."""

    month: str
    readers: int
    seconds: float
    reads: int
    reads_per_s: float
    per_reader_reads_per_s: float
    cache_hits: int
    cache_misses: int
    hit_rate: float | None
    """The read cache's hits over reads during the load (every layer; None: no reads)."""
    alone_reads_per_s: float | None
    """One reader alone right after the load, through the read cache (None: not measured)."""
    alone_uncached_reads_per_s: float | None
    """One reader alone doing the same reads without the read cache (None: not measured)."""
    errors: int
    first_error: str | None


def validate(readers: int, seconds: float) -> tuple[int, float]:
    """The load's size, or ConfigError naming the value out of range."""
    if isinstance(readers, bool) or not isinstance(readers, int):
        raise ConfigError("readers", readers, "expected a whole number")
    if not READERS[0] <= readers <= READERS[1]:
        raise ConfigError("readers", readers, f"expected {READERS[0]} to {READERS[1]}")
    if not SECONDS[0] <= float(seconds) <= SECONDS[1]:
        raise ConfigError("duration", seconds, f"expected {SECONDS[0]} to {SECONDS[1]:.0f} s")
    return readers, float(seconds)


def month_jobs(console: Console, month: str) -> tuple[str, list[int]]:
    """The month (validated) and its jobs' ids; ConfigError when it has none to read."""
    month = validate_month(month)
    with reads_for(VIEWERS):
        jobs = [j.id for j in console.jobs(month)]
    if not jobs:
        raise ConfigError("month", month, "has no jobs to read: run a batch of it first")
    return month, jobs


def _cached_round(console: Console, month: str, job_id: int) -> None:
    month_status(console, month)
    console.jobs(month)
    queries.timeline_view(console, job_id)


def _uncached_round(console: Console, month: str, job_id: int) -> None:
    status_of(console.reconciler.month_progress(month), month_batch(console, month))
    console.storage.jobs(month=month)
    console.storage.timeline(job_id)


class _Readers:
    """The reader threads' shared counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads = 0
        self.errors = 0
        self.first_error: str | None = None

    def loop(self, round_: Callable[[int], None], jobs: list[int], until: float) -> None:
        pick = random.Random(threading.get_ident()).choice
        with reads_for(VIEWERS):
            while time.monotonic() < until:
                try:
                    round_(pick(jobs))
                except Exception as exc:  # counted and reported; the reader goes on
                    with self.lock:
                        self.errors += 1
                        self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
                else:
                    with self.lock:
                        self.reads += _READS_PER_ROUND


def run_viewer_load(
    console: Console, month: str, readers: int, seconds: float, report: Report
) -> dict[str, Any]:
    """Run ``readers`` reader threads on ``month`` for ``seconds``; the figures, as a dict
    of :class:`ViewerLoad`. ``report(done_s, total_s, message)`` runs while they read."""
    readers, seconds = validate(readers, seconds)
    month, jobs = month_jobs(console, month)
    before = queries.cache_reads(console)
    counts, start = _Readers(), time.monotonic()
    threads = [
        threading.Thread(
            target=counts.loop,
            args=(lambda job: _cached_round(console, month, job), jobs, start + seconds),
            name=f"viewer-{n}",
            daemon=True,
        )
        for n in range(readers)
    ]
    for thread in threads:
        thread.start()
    _watch(threads, counts, start, seconds, readers, report)
    elapsed = max(time.monotonic() - start, 1e-9)
    hits, misses = (a - b for a, b in zip(queries.cache_reads(console), before, strict=True))
    return asdict(
        ViewerLoad(
            month=month, readers=readers, seconds=round(elapsed, 3), reads=counts.reads,
            reads_per_s=counts.reads / elapsed,
            per_reader_reads_per_s=counts.reads / elapsed / readers,
            cache_hits=hits, cache_misses=misses,
            hit_rate=hits / (hits + misses) if hits + misses else None,
            **_alone(console, month, jobs, seconds),
            errors=counts.errors, first_error=counts.first_error,
        )
    )  # fmt: skip


def _watch(
    threads: list[threading.Thread], counts: _Readers, start: float, seconds: float,
    readers: int, report: Report,
) -> None:  # fmt: skip
    """Report progress until every reader has stopped."""
    total = max(1, round(seconds))
    for thread in threads:
        while thread.is_alive():
            thread.join(_REPORT_EVERY_S)
            elapsed = time.monotonic() - start
            left = max(0.0, seconds - elapsed)
            report(
                min(total, int(elapsed)), total,
                f"{readers} readers · {counts.reads:,} reads · {left:.0f} s left",
            )  # fmt: skip


def _alone(console: Console, month: str, jobs: list[int], seconds: float) -> dict[str, Any]:
    """One reader's reads per second alone, through the read cache and without it, each
    for a short while: what the cache saves a reader, without the others' contention."""
    span = min(BASELINE_S, seconds / 4) / 2
    rounds = {
        "alone_reads_per_s": lambda job: _cached_round(console, month, job),
        "alone_uncached_reads_per_s": lambda job: _uncached_round(console, month, job),
    }
    out: dict[str, Any] = {}
    for name, round_ in rounds.items():
        counts, start = _Readers(), time.monotonic()
        counts.loop(round_, jobs, start + span)
        elapsed = time.monotonic() - start
        out[name] = counts.reads / elapsed if counts.reads and not counts.errors else None
    return out
