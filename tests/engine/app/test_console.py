from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.app.console import Console
from engine.errors import ConflictError
from engine.settings import Settings


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    settings = Settings().with_values("storage", db_url=f"sqlite:///{tmp_path / 'c.db'}")
    c = Console(settings.with_values("cache", prefetch_threshold=2))
    yield c
    c.close()


def wait_until(done: Callable[[], bool], timeout_s: float = 10) -> None:
    """Poll background work (the prefetch thread) until ``done()`` or the timeout."""
    end = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < end, "background work did not finish"
        time.sleep(0.01)


def run(console: Console, month: str, districts: list[str]) -> None:
    console.start_batch(month, districts=districts)
    console.batch.run(until_idle=True)


def test_a_job_read_often_prefetches_its_districts_recent_jobs(console: Console) -> None:
    for month in ("2025-01", "2025-02", "2025-03"):
        run(console, month, ["7", "8"])
    (latest,) = [j for j in console.jobs("2025-03") if j.district == "7"]
    for _ in range(3):  # past the threshold of 2 reads
        console.job(latest.id)
    wait_until(lambda: console.cache.stats()["total"]["prefetches"] >= 3)
    earlier = [j for m in ("2025-01", "2025-02") for j in console.jobs(m) if j.district == "7"]
    hits_before = console.cache.stats()["total"]["prefetch_hits"]
    assert [console.job(j.id).district for j in earlier] == ["7", "7"]
    assert console.cache.stats()["total"]["prefetch_hits"] == hits_before + 2


def test_a_month_being_worked_cannot_be_started_twice(console: Console) -> None:
    console.start_batch("2025-03", districts=["1"])
    with pytest.raises(ConflictError, match="still working"):
        console.start_batch("2025-03", districts=["1"])
    console.batch.run(until_idle=True)
    console.start_batch("2025-03", districts=["1"])  # finished: a new run may start
