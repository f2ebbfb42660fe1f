"""Freshness suite: how long a commit of one process takes to reach another's cached reads.

The reader (this process) runs a :class:`~engine.app.console.Console` with its
background threads, as the dashboard and the API do, and reads one job through
its caches. A writer subprocess (``python -m engine.bench.freshness URL JOB_ID``,
see :func:`main`) keeps its own storage open; for each trial the reader asks it to
set the job's ``checks`` to a new number, the writer commits and answers with the
wall time of its commit, and the reader, reading the job through its caches
meanwhile, notes the wall time it first shows the number.

Fields: ``cross_process_staleness_s`` (the worst trial; target <= 2) and
``cross_process_staleness_median_s``; ``reader_hit_rate`` (the reader's reads
served by its cache while it waited: the hit path stays); ``change_poll_us``
(one poll of the change feed that finds nothing, median); ``trials``.

The database is a temporary SQLite file, or, when ``recon bench`` is given a
PostgreSQL ``--db``, a scratch database on that server (created and dropped by the
suite), where the reader is woken by the writer's notification (LISTEN/NOTIFY).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO

from engine.app.console import Console, open_storage
from engine.errors import EngineError
from engine.settings import Settings, StorageSettings
from engine.store.changes import ChangeFeed
from engine.store.pg import is_postgres, scratch_database

MONTH = "2025-06"
DEADLINE_S = 10.0  # a trial that takes longer fails the suite: freshness is broken
_READ_EVERY_S = 0.001  # the reader's pace while it waits (a dashboard re-reads far less)
_ROOT = Path(__file__).resolve().parents[2]


def run(*, quick: bool, db_url: str | None = None) -> dict[str, float]:
    trials = 3 if quick else 20
    with _database(db_url) as url:
        console = Console(Settings().with_values("storage", db_url=url))
        try:
            job = console.storage.create_run(MONTH, ["1"], mode="optimized", source="bench")[0]
            console.start_background()
            with _writer(url, job.id) as (to_writer, from_writer):
                delays = [
                    _trial(console, job.id, n, to_writer, from_writer) for n in range(1, trials + 1)
                ]
            stats = console.cache.stats().layers["jobs"]
            poll_us = _poll_us(ChangeFeed(console.storage.database))
        finally:
            console.close()
    return {
        "cross_process_staleness_s": max(delays),
        "cross_process_staleness_median_s": statistics.median(delays),
        "reader_hit_rate": stats.hits / max(1, stats.hits + stats.misses),
        "change_poll_us": poll_us,
        "trials": float(trials),
    }


def _trial(
    console: Console, job_id: int, n: int, to_writer: IO[str], from_writer: IO[str]
) -> float:
    """Seconds from the writer's commit of ``checks = n`` until the reader's cached
    read shows it."""
    console.job(job_id)  # warm: the cached value is the old one
    to_writer.write(f"{n}\n")
    to_writer.flush()
    deadline = time.monotonic() + DEADLINE_S
    while console.job(job_id).checks != n:
        if time.monotonic() > deadline:
            raise EngineError(f"a commit of another process was not seen in {DEADLINE_S} s")
        time.sleep(_READ_EVERY_S)
    seen = time.time()
    committed = float(from_writer.readline())
    return max(0.0, seen - committed)


@contextmanager
def _database(db_url: str | None) -> Iterator[str]:
    """A scratch database on ``db_url``'s server if it is PostgreSQL, else a SQLite file."""
    if db_url is not None and is_postgres(db_url):
        with scratch_database(db_url, prefix="recon_bench_fresh") as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="recon-bench-fresh-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'fresh.db'}"


@contextmanager
def _writer(url: str, job_id: int) -> Iterator[tuple[IO[str], IO[str]]]:
    """The writer subprocess's stdin and stdout; it stops at the end (EOF)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.bench.freshness", url, str(job_id)],
        cwd=_ROOT,  # where ``engine`` is importable from
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise EngineError("the freshness writer did not start")
        yield proc.stdin, proc.stdout
    finally:
        proc.stdin.close()
        code = proc.wait(timeout=30)
        proc.stdout.close()
    if code != 0:
        raise EngineError(f"the freshness writer failed (exit {code})")


def _poll_us(feed: ChangeFeed, polls: int = 200) -> float:
    times = []
    for _ in range(polls):
        started = time.perf_counter()
        feed.poll()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    """The writer: ``URL JOB_ID``; on each stdin line ``N`` commit the job with
    ``checks = N`` and print the wall time of the commit; stop at EOF."""
    url, job_id = argv or sys.argv[1:]
    storage = open_storage(StorageSettings(db_url=url, mode="naive"))  # every write commits
    try:
        job = storage.get_job(int(job_id))
        print("ready", flush=True)
        for line in sys.stdin:
            storage.save_progress(replace(job, checks=int(line)), None, None)
            print(repr(time.time()), flush=True)
    finally:
        storage.close()
    return 0


__all__ = ["MONTH", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
