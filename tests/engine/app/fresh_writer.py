"""Another process that writes, for test_freshness.

``python -m tests.engine.app.fresh_writer DB_URL`` opens its own console (as a
second dashboard, the API or a CLI run would) and, for each stdin line, commits:

- ``cancel JOB_ID``: cancels the job (``Console.cancel_job``, a committed transition);
- ``check JOB_ID N``: records a check (the job's ``checks`` set to N and a timeline
  entry), then flushes the write queue;

then prints the wall time of the commit (``time.time()``). It stops at EOF.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime

from engine.app.console import Console
from engine.domain.models import TimelineEntry
from engine.settings import Settings


def apply(console: Console, words: list[str]) -> None:
    if words[0] == "cancel":
        console.cancel_job(int(words[1]))
        return
    job_id, n = int(words[1]), int(words[2])
    job = console.storage.get_job(job_id)
    entry = TimelineEntry(
        job_id, date(2025, 7, n), datetime.now(UTC), "2025-06", {"membership": n}, (), False
    )
    console.storage.save_progress(replace(job, checks=n), entry, None)
    console.storage.flush()


def main(url: str) -> None:
    console = Console(Settings().with_values("storage", db_url=url))
    try:
        print("ready", flush=True)
        for line in sys.stdin:
            apply(console, line.split())
            print(repr(time.time()), flush=True)
    finally:
        console.close()


if __name__ == "__main__":
    main(sys.argv[1])
