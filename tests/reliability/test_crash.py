"""A ``recon run`` killed with SIGKILL at random points finishes the month on re-run,
with the same final figures as an uninterrupted run and nothing duplicated."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from engine.cli.core import main

from .conftest import soak

MONTH = "2025-03"
ROOT = Path(__file__).resolve().parents[2]


def districts() -> str:
    n = 100 if soak() else 24
    return ",".join(str(i) for i in range(1, n + 1))


def run_args(db: Path) -> list[str]:
    # --wait: the killed run's month lease stays taken until its ttl has passed
    return ["run", "--month", MONTH, "--districts", districts(), "--db", f"sqlite:///{db}",
            "--wait"]  # fmt: skip


def entries(db: Path) -> int:
    try:
        with closing(sqlite3.connect(db, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM timeline").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def kill_after(db: Path, threshold: int) -> bool:
    """Start ``recon run``; SIGKILL it once ``threshold`` entries are durable.

    False if the run ended first.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *run_args(db)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=os.environ | {"RECON_STORAGE_LEASE_TTL_S": "2"},  # the next run waits 2 s at most
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while proc.poll() is None and entries(db) < threshold and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the database for the kill point
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def final_state(db: Path) -> dict[str, object]:
    with closing(sqlite3.connect(db)) as conn:
        snapshots = conn.execute(
            "SELECT district, as_of, metrics FROM month_end_snapshots"
            " WHERE month = ? ORDER BY district",
            (MONTH,),
        ).fetchall()
        jobs = conn.execute(
            "SELECT district, status, reason, final_as_of FROM jobs ORDER BY district"
        ).fetchall()
        dupes = conn.execute(
            "SELECT count(*) FROM"
            " (SELECT job_id, as_of FROM timeline GROUP BY 1, 2 HAVING count(*) > 1)"
        ).fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return {"snapshots": snapshots, "jobs": jobs, "dupes": dupes, "integrity": integrity}


def test_sigkill_at_random_points_then_rerun_matches_uninterrupted(
    tmp_path: Path, figures: Callable[..., None]
) -> None:
    straight = tmp_path / "straight.db"
    assert main(run_args(straight)) == 0
    expected = final_state(straight)
    total = entries(straight)
    assert total > 0 and all(j[1] == "completed" for j in expected["jobs"])

    crashed = tmp_path / "crashed.db"
    rng = random.Random(7)
    kills = 0
    for point in sorted(rng.sample(range(total // 10, total), 3 if not soak() else 6)):
        kills += kill_after(crashed, point)
    assert kills >= 2, "the run finished before it could be killed: raise the sizes"
    assert main(run_args(crashed)) == 0
    got = final_state(crashed)

    assert got["integrity"] == "ok" and got["dupes"] == 0
    assert got["snapshots"] == expected["snapshots"]
    assert got["jobs"] == expected["jobs"]
    figures(kills=kills, districts=len(expected["jobs"]), entries=total,
            duplicate_entries=got["dupes"], snapshots_differing=0, lost=0)  # fmt: skip
    assert json.loads(expected["snapshots"][0][2])  # real figures, not empty
