"""A ``recon run`` killed with SIGKILL at random points finishes the month on re-run,
with the same whole database state as an uninterrupted run and nothing duplicated."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

from engine.cli.core import main

from .conftest import ROOT, Figures, Reference, recon, run_args, soak
from .state import compare, dump, kinds

# A killed replay is resumed by the re-run, which counts one more attempt: by design.
RESUMED = ("jobs.attempts",)


def entries(db: Path) -> int:
    try:
        with closing(sqlite3.connect(db, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM timeline").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def health(db: Path) -> dict[str, object]:
    """SQLite's integrity check and the timeline entries stored twice (job, as-of)."""
    with closing(sqlite3.connect(db)) as conn:
        dupes = conn.execute(
            "SELECT count(*) FROM"
            " (SELECT job_id, as_of FROM timeline GROUP BY 1, 2 HAVING count(*) > 1)"
        ).fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return {"integrity": integrity, "duplicate_entries": dupes}


def kill_after(db: Path, threshold: int) -> bool:
    """Start ``recon run``; SIGKILL it once ``threshold`` entries are durable.

    False if the run ended first.
    """
    proc = subprocess.Popen(
        recon(*run_args(db)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=os.environ | {"RECON_STORAGE_LEASE_TTL_S": "2"},  # the re-run waits 2 s at most
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while proc.poll() is None and entries(db) < threshold and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the database for the kill point
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def test_sigkill_at_random_points_then_rerun_matches_uninterrupted(
    tmp_path: Path, figures: Figures, uninterrupted: Reference
) -> None:
    expected = uninterrupted(run_args())
    total = kinds(expected)["entry"]
    assert total > 0 and all(v["status"] == "completed" for k, v in expected.items()
                             if k.kind == "job")  # fmt: skip
    snapshots = [json.loads(str(v["metrics"])) for k, v in expected.items() if k.kind == "snapshot"]
    assert snapshots and all(snapshots)  # real figures, not empty

    crashed = tmp_path / "crashed.db"
    rng = random.Random(7)
    points = sorted(rng.sample(range(total // 10, total), 6 if soak() else 3))
    kills = sum(kill_after(crashed, point) for point in points)
    code = main([*run_args(crashed), "--wait"])  # the killed run's lease expires first
    diff = compare(expected, dump(crashed), ignore=RESUMED)
    found = health(crashed)
    figures.config(districts=kinds(expected)["job"], kill_points=len(points), kill_seed=7)
    figures.measure(kills_landed=kills, entries=total, rerun_exit_code=code, **found,
                    **diff.figures())  # fmt: skip

    assert kills >= 2, "the run finished before it could be killed: raise the sizes"
    assert code == 0
    assert found == {"integrity": "ok", "duplicate_entries": 0}
    assert diff.none, diff.describe()
