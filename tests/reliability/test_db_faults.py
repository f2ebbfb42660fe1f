"""Database faults: a lock held by another process, and disk writes failing mid-run.

Either way the error is clear, nothing committed is lost, and the month
finishes when the fault is gone with the state of an uninterrupted run.
"""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from engine.cli.core import main

from .conftest import MONTH, ROOT, Figures, Reference, recon, run_args
from .state import compare, dump
from .test_crash import RESUMED, entries, health

LOCK_HOLD_S = 3.0

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
start = time.perf_counter()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))  # the fault: hold the write lock this long
conn.execute("COMMIT")
print(f"released {time.perf_counter() - start:.2f}", flush=True)
"""


def test_database_locked_by_another_process_for_a_while(
    tmp_path: Path, figures: Figures, uninterrupted: Reference
) -> None:
    db = tmp_path / "locked.db"
    assert main(["status", "--month", MONTH, "--db", f"sqlite:///{db}"]) == 0  # the schema
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db), str(LOCK_HOLD_S)], stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    started = time.perf_counter()
    try:
        code = main(run_args(db))  # waits on the lock (busy timeout), then goes on
    finally:
        run_s = time.perf_counter() - started
        released = locker.communicate(timeout=30)[0].split()
    diff = compare(uninterrupted(run_args()), dump(db))
    found = health(db)
    figures.config(lock_hold_s=LOCK_HOLD_S)
    figures.measure(lock_held_s=float(released[-1]), run_s=round(run_s, 1), exit_code=code,
                    **found, **diff.figures())  # fmt: skip
    assert code == 0 and found["integrity"] == "ok"
    assert diff.none, diff.describe()


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG), do not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


FILE_SIZE_LIMIT = 400_000


def test_disk_write_failing_mid_run_then_resumed(
    tmp_path: Path, figures: Figures, uninterrupted: Reference
) -> None:
    db = tmp_path / "failing.db"
    proc = subprocess.run(
        recon(*run_args(db)), cwd=ROOT, capture_output=True, text=True, timeout=300,
        preexec_fn=_limit_file_size(FILE_SIZE_LIMIT),
    )  # fmt: skip
    with closing(sqlite3.connect(db)) as conn:
        integrity_after_fault = conn.execute("PRAGMA integrity_check").fetchone()[0]
    kept = entries(db)
    code = main(run_args(db))  # the fault is gone: the month finishes
    diff = compare(uninterrupted(run_args()), dump(db), ignore=RESUMED)
    found = health(db)
    figures.config(file_size_limit_bytes=FILE_SIZE_LIMIT)
    figures.measure(
        faulted_exit_code=proc.returncode, tracebacks=proc.stderr.count("Traceback"),
        integrity_after_fault=integrity_after_fault, entries_before_fault=kept,
        resumed_exit_code=code, **found, **diff.figures(),
    )  # fmt: skip

    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "storage" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert integrity_after_fault == "ok"
    assert kept > 0  # what was committed before the fault is there
    assert code == 0
    assert found == {"integrity": "ok", "duplicate_entries": 0}
    assert diff.none, diff.describe()
