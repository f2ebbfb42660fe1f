"""A batch whose ``recon run`` was killed (SIGKILL) gets a final state once its work is
taken over or resumed, with counts from what its jobs really did (issue #18, defect 6).
On SQLite and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from engine.cli.core import main
from engine.store.schema import batch_items, jobs

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-03"
DISTRICTS = "1,2,3,4,5,6,7,8"
TOTAL = 8


def url(db: str) -> str:
    return db


def completed_jobs(db: str) -> int:
    return count(db, select(func.count()).select_from(jobs).where(jobs.c.status == "completed"))


def recorded_items(db: str) -> int:
    """Item rows written as succeeded (the runner writes each within a second of its end)."""
    done = batch_items.c.status == "succeeded"
    return count(db, select(func.count()).select_from(batch_items).where(done))


def count(db: str, query: Any) -> int:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    except SQLAlchemyError:  # not created yet
        return 0
    finally:
        engine.dispose()


def killed_run(db: str) -> int:
    """A ``recon run`` killed with SIGKILL once some of its jobs completed; how many had
    completed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", "--month", MONTH, "--districts", DISTRICTS,
         "--db", url(db), "--concurrency", "2", "--latency-ms", "100"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while proc.poll() is None and completed_jobs(db) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the database for the kill point
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = completed_jobs(db)
    assert 2 <= done < TOTAL
    return done


def batches(db: str, capsys: pytest.CaptureFixture[str]) -> dict[int, dict[str, object]]:
    capsys.readouterr()
    assert main(["batch", "list", "--json", "--db", url(db)]) == 0
    return {b["batch_id"]: b for b in json.loads(capsys.readouterr().out)}


def items(db: str, batch_id: int, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["batch", "show", str(batch_id), "--json", "--db", url(db)]) == 0
    found: list[dict[str, object]] = json.loads(capsys.readouterr().out)["items"]
    return found


def test_a_rerun_of_the_month_ends_the_killed_batch_as_interrupted(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url
    done = killed_run(db)
    written = recorded_items(db)  # rows of completed items the run wrote before the kill
    before = batches(db, capsys)[1]
    queued = {"succeeded": written, "queued": TOTAL - written} if written else {"queued": TOTAL}
    assert before["status"] == "running" and before["counts"] == queued

    assert main(["run", "--month", MONTH, "--districts", DISTRICTS, "--db", url(db)]) == 0
    after = batches(db, capsys)
    assert [b["status"] for b in after.values()] == ["finished", "interrupted"]
    killed, rerun = after[1], after[2]
    # the jobs that completed before the kill count as the killed batch's successes;
    # the rest were taken over by the re-run, which did them
    assert killed["counts"] == {"succeeded": done, "cancelled": TOTAL - done}
    assert killed["finished_at"] is not None
    assert rerun["counts"] == {"succeeded": TOTAL - done}
    notes = {i["error"] for i in items(db, 1, capsys) if i["status"] == "cancelled"}
    assert notes == {"interrupted: its process stopped; batch 2 took over"}
    assert completed_jobs(db) == TOTAL


def test_batch_resume_finishes_the_killed_batch_with_its_jobs_real_states(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url
    done = killed_run(db)
    written = recorded_items(db)  # the others completed, but the kill came before their rows
    capsys.readouterr()
    assert main(["batch", "resume", "--json", "--db", url(db)]) == 0
    [resumed] = json.loads(capsys.readouterr().out)
    assert (resumed["batch_id"], resumed["done"]) == (1, True)
    [batch] = batches(db, capsys).values()
    assert batch["status"] == "finished"
    # completed before the kill: recorded as succeeded, not run again nor "skipped"
    assert batch["counts"] == {"succeeded": TOTAL}
    attempts = [len(i["attempts"]) for i in items(db, 1, capsys)]
    assert sorted(attempts) == [0] * (done - written) + [1] * (TOTAL - done + written)
    assert completed_jobs(db) == TOTAL

    # nothing is left running: a later run of the month has nothing to take over
    assert main(["batch", "resume", "--db", url(db)]) == 0
    assert "Nothing to resume" in capsys.readouterr().err


def test_a_killed_batch_nobody_reruns_ends_interrupted_once_its_lease_expired(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_url
    monkeypatch.setenv("RECON_STORAGE_LEASE_TTL_S", "1")  # the killed run's and ours
    done = killed_run(db)
    deadline = time.monotonic() + 60
    while (batch := batches(db, capsys)[1])["status"] == "running":
        assert time.monotonic() < deadline, "the killed batch was never ended"
        time.sleep(0.1)  # until the killed run's lease has expired
    # any read ends it: the jobs that completed show as succeeded, the rest stay queued
    assert batch["status"] == "interrupted" and batch["finished_at"] is not None
    assert batch["counts"] == {"succeeded": done, "queued": TOTAL - done}
    assert {i["status"] for i in items(db, 1, capsys)} == {"succeeded", "queued"}

    capsys.readouterr()
    assert main(["batch", "resume", "--json", "--db", url(db)]) == 0
    [resumed] = json.loads(capsys.readouterr().out)
    assert (resumed["batch_id"], resumed["done"]) == (1, True)
    [batch] = batches(db, capsys).values()
    assert batch["status"] == "finished" and batch["counts"] == {"succeeded": TOTAL}
    assert completed_jobs(db) == TOTAL
