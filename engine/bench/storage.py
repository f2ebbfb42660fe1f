"""Storage suite: row-by-row commits vs batched writes, single vs bulk reads.

Writes go through the real per-check path (``save_progress``): naive mode
commits every entry and job update on its own; optimized mode coalesces them
(batch size 1,000 here) into one transaction per flush. Each pass writes a new
file. Reads load jobs with their timelines one by one (two queries per job) vs
in bulk (one query for the jobs, one per 500 timelines).

Each figure is the median of the repetitions after a warm-up; the naive and the
optimized repetitions take turns, each after a garbage collection. A repetition
lasts half a second at least: a batched pass or a bulk read, a tenth of a second
or less, is run again within it and their mean taken (one alone swings by a
third with the machine's moment). ``*_spread`` is their max - min. The speed-ups
are the medians of the rounds' ratios (see bench.paired_ratio).
"""

from __future__ import annotations

import gc
import itertools
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from engine.app.console import open_storage
from engine.bench import alternate, paired_ratio, summary
from engine.domain.models import Job, TimelineEntry
from engine.settings import StorageSettings

NOW = datetime(2025, 7, 1, tzinfo=UTC)


def _entries(jobs: list[Job], n: int) -> list[tuple[Job, TimelineEntry]]:
    out = []
    for i in range(n):
        job = jobs[i % len(jobs)]
        as_of = date(2025, 7, 1) + timedelta(days=i // len(jobs))
        out.append(
            (job, TimelineEntry(job.id, as_of, NOW, "2025-06", {"membership": i}, (), False))
        )
    return out


def _write_rates(
    folder: Path, passes: dict[str, int], jobs_n: int, repeat: int, at_least: float
) -> dict[str, list[float]]:
    """The write rate of each mode in each of ``repeat`` rounds in which the modes take
    turns (``passes``: entries per pass). Each pass writes a new file; a turn writes
    passes until they add up to ``at_least`` seconds, as bench.seconds does.

    A pass over the same file again would time upserts instead of inserts; a small
    first pass of each mode warms up.
    """
    files = itertools.count()

    def rate(mode: str, n: int) -> float:
        elapsed, written = 0.0, 0
        while written == 0 or elapsed < at_least:
            elapsed += _write_seconds(folder / f"w-{mode}-{next(files)}.db", mode, n, jobs_n)
            written += n
        return written / elapsed

    for mode, n in passes.items():
        _write_seconds(folder / f"w-{mode}-warm.db", mode, max(1, n // 20), jobs_n)
    rates: dict[str, list[float]] = {mode: [] for mode in passes}
    for _ in range(repeat):
        for mode, n in passes.items():
            rates[mode].append(rate(mode, n))
    return rates


def _write_seconds(path: Path, mode: str, n: int, jobs_n: int) -> float:
    """Seconds to write ``n`` entries of ``jobs_n`` jobs to a new file and flush them."""
    storage = open_storage(StorageSettings(db_url=f"sqlite:///{path}", mode=mode, batch_size=1000))
    try:
        jobs = storage.create_run(
            "2025-06", [str(i) for i in range(jobs_n)], mode=mode, source="bench"
        )
        work = _entries(jobs, n)
        gc.collect()  # as bench.seconds does
        started = time.perf_counter()
        for job, entry in work:
            storage.save_progress(job, entry, None)
        storage.flush()
        return time.perf_counter() - started
    finally:
        storage.close()


def _read_times(
    folder: Path, jobs_n: int, repeat: int, at_least: float
) -> tuple[list[float], list[float]]:
    """Seconds of the single and of the bulk reads in each round."""
    url = f"sqlite:///{folder / 'reads.db'}"
    writer = open_storage(StorageSettings(db_url=url, mode="optimized", batch_size=5000))
    jobs = writer.create_run(
        "2025-06", [str(i) for i in range(jobs_n)], mode="optimized", source="bench"
    )
    for job, entry in _entries(jobs, jobs_n * 10):
        writer.save_progress(job, entry, None)
    writer.close()
    # Naive: no cache, to measure the queries.
    reader = open_storage(StorageSettings(db_url=url, mode="naive"))
    try:
        run_id = jobs[0].run_id

        def single() -> None:
            for job in jobs:
                reader.get_job(job.id)
                reader.timeline(job.id)

        def bulk() -> None:
            ids = [j.id for j in reader.jobs(run_id=run_id)]
            reader.timelines(ids)

        single_t, bulk_t = alternate([single, bulk], repeat=repeat, at_least=at_least)
        return single_t, bulk_t
    finally:
        reader.close()


def run(*, quick: bool) -> dict[str, float]:
    writes, jobs_n, repeat = (1_000, 100, 3) if quick else (20_000, 1_000, 5)
    at_least = 0.0 if quick else 0.5
    with tempfile.TemporaryDirectory(prefix="recon-bench-") as tmp:
        folder = Path(tmp)
        # Committing row by row is slow: a quarter of the entries (a tenth in quick runs)
        # give its rate as well.
        passes = {"naive": writes // (10 if quick else 4), "optimized": writes}
        rates = _write_rates(folder, passes, jobs_n, repeat, at_least)
        single_t, bulk_t = _read_times(folder, jobs_n, repeat, at_least)
    naive, batched = summary(rates["naive"]), summary(rates["optimized"])
    single, bulk = summary(single_t), summary(bulk_t)
    return {
        "write_row_commit_per_s": naive[0],
        "write_row_commit_per_s_spread": naive[1],
        "write_batched_per_s": batched[0],
        "write_batched_per_s_spread": batched[1],
        "write_speedup": paired_ratio(rates["optimized"], rates["naive"]),
        "read_single_s": single[0],
        "read_single_s_spread": single[1],
        "read_bulk_s": bulk[0],
        "read_bulk_s_spread": bulk[1],
        "read_speedup": paired_ratio(single_t, bulk_t),
    }
