"""Database faults: a lock held by another process, and disk writes failing mid-run.

Either way the error is clear, nothing committed is lost, and the month
finishes when the fault is gone.
"""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from engine.cli.core import main

from .test_crash import ROOT, entries, final_state, run_args

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))  # the fault: hold the write lock this long
conn.execute("COMMIT")
"""


def test_database_locked_by_another_process_for_a_while(
    tmp_path: Path, figures: Callable[..., None]
) -> None:
    db = tmp_path / "locked.db"
    assert main(["run", "--month", "2025-03", "--districts", "1", "--db", f"sqlite:///{db}"]) == 0
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db), "3"], stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    try:
        code = main(run_args(db))  # waits on the lock (busy timeout), then goes on
    finally:
        locker.wait(timeout=30)
        locker.stdout.close()
    state = final_state(db)
    assert code == 0 and state["integrity"] == "ok"
    assert all(j[1] == "completed" for j in state["jobs"])
    figures(lock_held_s=3, jobs_completed=len(state["jobs"]), lost=0)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG), do not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_disk_write_failing_mid_run_then_resumed(
    tmp_path: Path, figures: Callable[..., None]
) -> None:
    straight = tmp_path / "straight.db"
    assert main(run_args(straight)) == 0
    expected = final_state(straight)

    db = tmp_path / "failing.db"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", *run_args(db)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        preexec_fn=_limit_file_size(400_000),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "storage" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = entries(db)
    assert kept > 0  # what was committed before the fault is there

    assert main(run_args(db)) == 0  # the fault is gone: the month finishes
    got = final_state(db)
    assert got["integrity"] == "ok" and got["dupes"] == 0
    assert got["snapshots"] == expected["snapshots"]
    assert entries(db) >= kept
    figures(write_faults=1, entries_before_fault=kept, lost=0)
