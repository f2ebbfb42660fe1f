"""Storage suite: row-by-row commits vs batched writes, single vs bulk reads.

Writes go through the real per-check path (``save_progress``): naive mode
commits every entry and job update on its own; optimized mode coalesces them
(batch size 1,000 here) into one transaction per flush. Reads load jobs with
their timelines one by one (two queries per job) vs in bulk (two queries).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from engine.models import Job, TimelineEntry
from engine.settings import StorageSettings
from engine.storage import Storage

from . import measure

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


def _write_rate(folder: Path, mode: str, n: int, jobs_n: int) -> float:
    settings = StorageSettings(
        db_url=f"sqlite:///{folder / f'w-{mode}-{n}.db'}", mode=mode, batch_size=1000
    )
    storage = Storage(settings)
    try:
        jobs = storage.create_run(
            "2025-06", [str(i) for i in range(jobs_n)], mode=mode, source="bench"
        )
        work = _entries(jobs, n)

        def write() -> None:
            for job, entry in work:
                storage.save_progress(job, entry, None)
            storage.flush()

        seconds, _ = measure(
            write, repeat=1, warmup=0
        )  # re-writes would be upserts: one clean pass
        return n / seconds
    finally:
        storage.close()


def _read_times(folder: Path, jobs_n: int, repeat: int) -> tuple[float, float]:
    url = f"sqlite:///{folder / 'reads.db'}"
    writer = Storage(StorageSettings(db_url=url, mode="optimized", batch_size=5000))
    jobs = writer.create_run(
        "2025-06", [str(i) for i in range(jobs_n)], mode="optimized", source="bench"
    )
    for job, entry in _entries(jobs, jobs_n * 10):
        writer.save_progress(job, entry, None)
    writer.close()
    reader = Storage(StorageSettings(db_url=url, mode="naive"))  # no cache: measure the queries
    try:
        run_id = jobs[0].run_id

        def single() -> None:
            for job in jobs:
                reader.get_job(job.id)
                reader.timeline(job.id)

        def bulk() -> None:
            ids = [j.id for j in reader.jobs(run_id=run_id)]
            reader.timelines(ids)

        return measure(single, repeat=repeat)[0], measure(bulk, repeat=repeat)[0]
    finally:
        reader.close()


def run(*, quick: bool) -> dict[str, float]:
    writes, jobs_n = (1_000, 100) if quick else (20_000, 1_000)
    with tempfile.TemporaryDirectory(prefix="recon-bench-") as tmp:
        folder = Path(tmp)
        naive = _write_rate(folder, "naive", writes // (10 if quick else 4), jobs_n)
        batched = _write_rate(folder, "optimized", writes, jobs_n)
        single, bulk = _read_times(folder, jobs_n, repeat=3 if quick else 5)
    return {
        "write_row_commit_per_s": naive,
        "write_batched_per_s": batched,
        "write_speedup": batched / naive,
        "read_single_s": single,
        "read_bulk_s": bulk,
        "read_speedup": single / bulk,
    }
