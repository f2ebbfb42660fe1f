"""Freshness across processes: a commit of another process reaches this console's
cached reads within 2 seconds, and reads stay cache hits while nothing changes.

The writer is a real subprocess with its own console (tests/engine/app/fresh_writer.py)
on the same database as the reader console of the test process: a SQLite file (the
reader polls the change feed) and a PostgreSQL database (a notification wakes the
reader at once; the poll stays as the fallback).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from engine.app.console import Console
from engine.app.freshness import Freshness
from engine.app.wiring import forget_elsewhere, freshness
from engine.domain.models import Job, JobStatus
from engine.errors import StorageError
from engine.settings import Settings
from engine.store.changes import NO_CHANGES, Changes
from tests.databases import NewUrl

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-06"
FRESH_S = 2.0  # the bound
START_S = 60.0  # the writer's start-up, generous on a shared machine


def reader(url: str, mode: str) -> Console:
    return Console(Settings().with_values("storage", db_url=url, mode=mode))


@pytest.fixture
def url(db_url: str) -> str:
    return db_url


@contextmanager
def writer(url: str) -> Iterator[Callable[[str], float]]:
    """The writer subprocess: ``commit(command)`` sends it a command and returns the
    wall time of its commit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.app.fresh_writer", url],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None
    try:
        assert _line(stdout) == "ready"

        def commit(command: str) -> float:
            stdin.write(command + "\n")
            stdin.flush()
            return float(_line(stdout))

        yield commit
    finally:
        stdin.close()
        code = proc.wait(timeout=START_S)
        stdout.close()
    assert code == 0


def _line(stdout: IO[str]) -> str:
    return stdout.readline().strip()


def seen_within(committed: float, shows: Callable[[], bool]) -> float:
    """Read until ``shows()``; the seconds from the commit, failing past :data:`FRESH_S`."""
    while not shows():
        assert time.time() - committed < FRESH_S, "another process's commit not seen in 2 s"
        time.sleep(0.005)  # the reader's pace; the poll is what is being waited for
    return time.time() - committed


def _listed(jobs: tuple[Job, ...], job_id: int) -> Job:
    (job,) = [j for j in jobs if j.id == job_id]
    return job


@pytest.mark.parametrize("mode", ["optimized", "naive"])
def test_a_commit_of_another_process_reaches_job_jobs_and_progress_in_2_s(
    url: str, mode: str
) -> None:
    console = reader(url, mode)
    try:
        first, second = console.storage.create_run(MONTH, ["1", "2"], mode=mode, source="test")
        console.start_background()
        with writer(url) as commit:
            # warm every cached read: each now serves the pending jobs
            assert console.job(first.id).status == JobStatus.PENDING
            assert _listed(console.jobs(MONTH), first.id).status == JobStatus.PENDING
            assert console.month_progress(MONTH).by_status == {"pending": 2}
            assert console.timeline(second.id) == ()

            committed = commit(f"cancel {first.id}")
            seen_within(committed, lambda: console.job(first.id).status == JobStatus.CANCELLED)
            seen_within(
                committed,
                lambda: _listed(console.jobs(MONTH), first.id).status == JobStatus.CANCELLED,
            )
            seen_within(
                committed,
                lambda: console.month_progress(MONTH).by_status == {"pending": 1, "cancelled": 1},
            )

            committed = commit(f"check {second.id} 3")
            seen_within(committed, lambda: console.job(second.id).checks == 3)
            seen_within(committed, lambda: len(console.timeline(second.id)) == 1)
            seen_within(committed, lambda: _listed(console.jobs(MONTH), second.id).checks == 3)
        assert console.freshness.figures().changes_seen >= 2
    finally:
        console.close()


def test_on_postgres_a_notification_wakes_the_reader_long_before_its_poll(
    new_db_url: NewUrl, backend: str
) -> None:
    if backend != "postgres":
        return  # SQLite has no notifications: its reader polls (the test above)
    url = new_db_url()
    console = reader(url, "optimized")
    try:
        job = console.storage.create_run(MONTH, ["1"], mode="optimized", source="test")[0]
        # A poll once a minute: only the writer's notification can bring its commit in 2 s.
        console.freshness = freshness(console.cache, console.storage, console.clock, interval_s=60)
        console.start_background()
        with writer(url) as commit:
            assert console.job(job.id).status == JobStatus.PENDING  # cached
            committed = commit(f"cancel {job.id}")
            seen_within(committed, lambda: console.job(job.id).status == JobStatus.CANCELLED)
        assert console.freshness.figures().woken >= 1
    finally:
        console.close()


def test_reads_stay_cache_hits_while_nothing_changes_and_own_writes_do_not_count(
    url: str,
) -> None:
    console = reader(url, "optimized")
    try:
        job = console.storage.create_run(MONTH, ["1"], mode="optimized", source="test")[0]
        reads = (lambda: console.job(job.id), lambda: console.jobs(MONTH))
        for read in reads:
            read()  # the misses that fill the cache
        before = console.cache.stats().total
        storage_before = console.storage.cache_stats()
        for _ in range(5):
            assert console.freshness.check() == NO_CHANGES
            for read in reads:
                read()
        after = console.cache.stats().total
        assert after.misses == before.misses
        assert after.hits == before.hits + 10
        assert console.storage.cache_stats().misses == storage_before.misses

        console.cancel_job(job.id)  # this process's own commit: invalidated at once
        assert console.job(job.id).status == JobStatus.CANCELLED
        assert not console.freshness.check()  # and not again by the watcher
        misses = console.cache.stats().total.misses
        console.job(job.id)
        assert console.cache.stats().total.misses == misses
    finally:
        console.close()


def test_everything_changed_clears_the_data_caches(url: str) -> None:
    console = reader(url, "optimized")
    try:
        job = console.storage.create_run(MONTH, ["1"], mode="optimized", source="test")[0]
        console.job(job.id)
        console.storage.get_job(job.id)
        forget = forget_elsewhere(console.cache, console.storage)
        Freshness(feed=_Fixed(Changes(everything=True)), on_change=forget).check()
        assert console.cache.stats().total.size == 0
        assert console.storage.cache_stats().size == 0
    finally:
        console.close()


def test_a_failing_poll_is_counted_and_the_next_one_goes_on() -> None:
    applied: list[Changes] = []
    feed = _Fixed(Changes(job_ids=frozenset({1})), fail_first=True)
    watcher = Freshness(feed=feed, on_change=applied.append)
    assert watcher.check() == NO_CHANGES
    assert watcher.check() == Changes(job_ids=frozenset({1}))
    assert applied == [Changes(job_ids=frozenset({1}))]
    figures = watcher.figures()
    assert (figures.polls, figures.errors, figures.changes_seen) == (2, 1, 1)
    assert not figures.running


class _Fixed:
    """A change feed that answers ``changes`` (after one storage error if asked)."""

    def __init__(self, changes: Changes, *, fail_first: bool = False) -> None:
        self._changes = changes
        self._fail = fail_first

    def poll(self) -> Changes:
        if self._fail:
            self._fail = False
            raise StorageError("changes", "database is locked", transient=True)
        return self._changes
