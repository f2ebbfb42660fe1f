"""The shared engine under load: readers on many threads while a batch runs,
memory throttling with the real process figures, and a bounded-memory run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engine.app.console import Console
from engine.batch.runner import BatchProgress
from engine.settings import Settings

from .conftest import MONTH, Figures, soak

READERS = 8
BALLAST_MB = 300


def make_console(tmp_path: Path, **batch: object) -> Console:
    settings = Settings().with_values("storage", db_url=f"sqlite:///{tmp_path / 'load.db'}")
    return Console(settings.with_values("batch", **batch) if batch else settings)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    c = make_console(tmp_path)
    yield c
    c.close()


def adds_up(p: BatchProgress) -> bool:
    parts = (p.queued, p.running, p.retrying, p.succeeded, p.failed, p.skipped, p.cancelled)
    return sum(parts) == p.total


def test_eight_reader_threads_while_a_batch_runs(
    console: Console, figures: Figures, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    districts = [str(i) for i in range(1, (60 if soak() else 16) + 1)]
    batch = console.start_batch(MONTH, districts=districts).batch_id
    console.start_background()
    errors: list[BaseException] = []
    reads = [0] * READERS
    bad_progress: list[BatchProgress] = []

    def reader(n: int) -> None:
        try:
            while not console.batch.progress(batch).done:
                jobs = console.jobs(MONTH)
                console.month_progress(MONTH)
                for job in jobs[n::READERS][:3]:
                    console.job(job.id)
                    console.timeline(job.id)
                console.cache.stats()
                console.monitor.stats(60)
                if not adds_up(p := console.batch.progress(batch)):
                    bad_progress.append(p)
                reads[n] += 1
        except BaseException as exc:  # noqa: BLE001 - any exception fails the test
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    statuses = [j.status.value for j in console.jobs(MONTH)]
    stats = console.cache.stats().total
    figures.config(reader_threads=READERS, districts=len(districts))
    logged = [r.levelno for r in caplog.records]
    figures.measure(read_rounds=sum(reads), readers_that_read=sum(r > 0 for r in reads),
                    exceptions=len(errors), inconsistent_progress=len(bad_progress),
                    jobs_completed=statuses.count("completed"),
                    cache_lookups=stats.hits + stats.misses,
                    error_log_records=sum(level >= logging.ERROR for level in logged),
                    warning_log_records=logged.count(logging.WARNING))  # fmt: skip
    assert not errors and not bad_progress, (errors[:3], bad_progress[:3])
    assert all(r > 0 for r in reads)
    assert set(statuses) == {"completed"}
    assert stats.hits + stats.misses >= sum(reads) * 2


def test_low_memory_threshold_throttles_then_completes(console: Console, figures: Figures) -> None:
    districts = ["1", "2", "3", "4"]
    console.districts(MONTH)  # warm the engine up before measuring its memory
    threshold = int(psutil.Process().memory_info().rss / 2**20) + 150
    ballast = [bytearray(b"x" * (BALLAST_MB * 2**20))]  # resident and above the threshold
    config = {"memoryThresholdMB": threshold, "maxConcurrentJobs": 2}  # figures.config below
    batch = console.start_batch(MONTH, districts=districts, config=config).batch_id
    released = threading.Event()

    def release_once_throttled() -> None:
        """Free the ballast once the runner has held items back for a while."""
        while not released.wait(0.05) and not console.batch.progress(batch).done:
            if console.batch.progress(batch).throttled_s > 0.2:
                ballast.clear()
                released.set()

    watcher = threading.Thread(target=release_once_throttled)
    watcher.start()
    console.batch.run(until_idle=True)
    watcher.join(timeout=60)
    progress = console.batch.progress(batch)
    figures.config(threshold_mb=threshold, ballast_mb=BALLAST_MB, districts=len(districts),
                   max_concurrent_jobs=2)  # fmt: skip
    figures.measure(throttled_s=round(progress.throttled_s, 2), ballast_released=released.is_set(),
                    succeeded=progress.succeeded, failed=progress.failed)  # fmt: skip
    assert released.is_set() and progress.throttled_s > 0.2
    assert progress.succeeded == len(districts)


def test_memory_of_a_large_run_stays_bounded(tmp_path: Path, figures: Figures) -> None:
    months = ["2024-08", "2024-09", "2024-10", "2024-11", "2024-12", "2025-01", "2025-02",
              "2025-03", "2025-04"] if soak() else ["2025-02", "2025-03"]  # fmt: skip
    console = make_console(tmp_path)
    process = psutil.Process()
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for month in months:
            console.start_batch(month)
        console.batch.run(until_idle=True)
        jobs = sum(len(console.jobs(m)) for m in months)
    finally:
        done.set()
        sampler.join()
        console.close()
    peak_mb = peak[0] / 2**20
    figures.config(months=len(months), rss_limit_mb=1024)
    figures.measure(jobs=jobs, peak_rss_mb=round(peak_mb, 1))
    assert jobs >= 100 * len(months)
    assert peak_mb < 1024  # the default memoryThresholdMB
