"""Measure how long each dashboard page takes to run on a big database (not a test).

    .venv/bin/python -m tests.dashboard.measure_pages [/tmp/big.db]

Builds (once) a SQLite database with 10,000 jobs (88 months x 114 districts),
100,000 timeline entries and a day of monitor history (aggregates every 10 s
for 15 operations, resource samples every 5 s), then runs every page in
Streamlit's AppTest: the first run of each page (cold caches) and the median of
a few more, in seconds (server side: the browser's drawing is not included).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from engine.app.console import open_storage
from engine.domain.models import ALL_METRICS, month_end, next_month
from engine.settings import StorageSettings
from engine.sources.sim import DISTRICTS
from engine.store.schema import jobs, perf_aggregates, perf_resources, runs, timeline

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
PAGES = ("close", "batch", "cache", "performance", "before_after", "settings")
MONTHS, ENTRIES_PER_JOB = 88, 10
OPERATIONS = (
    "source.fetch",
    "parse",
    "detect_changes",
    "job.check",
    "job.finalize",
    "batch.item",
    "batch.run",
    "cache.get",
    "storage.flush",
    "storage.get_job",
    "storage.timelines",
    "storage.runs",
    "storage.load_jobs",
    "storage.latest_run",
    "storage.transition",
)


def build(url: str) -> None:
    storage = open_storage(StorageSettings(db_url=url, mode="naive"))
    rng = random.Random(1)
    now = datetime.now(UTC)
    month = "2018-07"
    with storage.transaction("measure_build") as conn:
        for _ in range(MONTHS):
            run_id = conn.execute(
                insert(runs).values(month=month, created_at=now, mode="optimized", source="sim")
            ).inserted_primary_key[0]
            conn.execute(insert(jobs), [_job(run_id, d, month, now) for d in DISTRICTS])
            month = next_month(month)
        job_rows = conn.execute(jobs.select()).all()
        entries = [
            _entry(j.id, month_end(j.month) + timedelta(days=n), rng, now)
            for j in job_rows
            for n in range(ENTRIES_PER_JOB)
        ]
        conn.execute(insert(timeline), entries)
        conn.execute(insert(perf_aggregates), _aggregates(now, rng))
        conn.execute(insert(perf_resources), _resources(now, rng))
    storage.close()


def _job(run_id: int, district: str, month: str, now: datetime) -> dict[str, object]:
    done = month_end(month) + timedelta(days=ENTRIES_PER_JOB - 1)
    return {
        "run_id": run_id,
        "district": district,
        "month": month,
        "status": "completed",
        "reason": "closing-ended",
        "created_at": now,
        "completed_at": now,
        "final_as_of": done,
        "last_check_date": done,
        "checks": ENTRIES_PER_JOB,
        "significant_changes": 3,
        "stable_days": 3,
        "extension_days": 0,
        "attempts": 1,
        "significant_dates": "",
    }


def _entry(job_id: int, as_of: date, rng: random.Random, now: datetime) -> dict[str, object]:
    metrics = {m: float(rng.randint(0, 5000)) for m in ALL_METRICS}
    changes = [[m, metrics[m] - 3, metrics[m], rng.random() < 0.3] for m in ALL_METRICS[:3]]
    return {
        "job_id": job_id,
        "as_of": as_of,
        "checked_at": now,
        "data_month": as_of.strftime("%Y-%m") if as_of.day != 1 else None,
        "metrics": json.dumps(metrics),
        "changes": json.dumps(changes),
        "significant": any(c[3] for c in changes),
        "note": "",
    }


def _aggregates(now: datetime, rng: random.Random) -> list[dict[str, object]]:
    rows = []
    for step in range(8640):  # a day of 10 s intervals
        end = now - timedelta(seconds=10 * step)
        for op in OPERATIONS:
            p50 = rng.uniform(0.5, 50)
            rows.append(
                {
                    "interval_start": end - timedelta(seconds=10),
                    "interval_end": end,
                    "process": "measure:1",
                    "operation": op,
                    "calls": 20,
                    "failures": 0,
                    "total_ms": 20 * p50,
                    "min_ms": p50 / 2,
                    "max_ms": p50 * 3,
                    "p50_ms": p50,
                    "p95_ms": p50 * 2,
                    "p99_ms": p50 * 2.5,
                    "errors": "{}",
                    "sketch": json.dumps({"100": 10, "120": 10}),
                }
            )
    return rows


def _resources(now: datetime, rng: random.Random) -> list[dict[str, object]]:
    return [
        {
            "at": now - timedelta(seconds=5 * step),
            "process": "measure:1",
            "rss_mb": rng.uniform(150, 250),
            "cpu_percent": rng.uniform(0, 100),
            "threads": 20.0,
            "open_files": 5.0,
            "system_memory_percent": 40.0,
            "disk_read_bytes": 0.0,
            "disk_write_bytes": 0.0,
            "gauges": "{}",
        }
        for step in range(17280)  # a day of 5 s samples
    ]


def measure(url: str, runs_per_page: int = 5) -> dict[str, tuple[float, float]]:
    """Per page: its first run (cold caches) and the median of later runs, in seconds."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["RECON_DB_URL"] = url
    at = AppTest.from_file(str(APP), default_timeout=120)
    out = {"app start (engine, imports)": (_timed(at.run), 0.0)}
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py")
        first = _timed(at.run)
        warm = statistics.median(_timed(at.run) for _ in range(runs_per_page))
        assert not at.exception, [e.value for e in at.exception]
        out[page] = (first, warm)
    at.switch_page("app_pages/performance.py").run()
    window = next(s for s in at.selectbox if s.label == "Window")
    window.select("24 hours")  # the heaviest choice: a day of history
    first = _timed(at.run)
    out["performance, 24 h window"] = (first, statistics.median(_timed(at.run) for _ in range(3)))
    st.cache_resource.clear()
    return out


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/recon-measure.db")
    url = f"sqlite:///{path}"
    if not path.exists():
        started = time.perf_counter()
        build(url)
        print(f"built {path} in {time.perf_counter() - started:.0f} s")
    print(f"{'page':28} {'first':>8} {'median':>8}")
    for page, (first, warm) in measure(url).items():
        print(f"{page:28} {first:7.3f}s {warm:7.3f}s")


if __name__ == "__main__":
    main()
