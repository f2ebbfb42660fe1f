"""``recon watch`` in real processes on one SQLite file: two watchers, the active one
killed with SIGKILL and the standby taking over without checking a (job, collection
date) twice; SIGTERM or SIGINT stopping a watcher cleanly mid-tick."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from engine.app.console import open_storage
from engine.cli.core import main
from engine.clock import ShiftedClock
from engine.settings import StorageSettings
from engine.store.leases import SqlLeases
from tests.engine.cli.test_month_lease import finish, poll, recon

MONTH = "2025-05"
TODAY = "2025-06-08"  # May closes on 6 June (calendar below): the watch ends the close
TTL_S = 2.0
# Slow enough that a tick lasts seconds (3 districts, 7 days, 100 ms a fetch).
SLOW = {"RECON_SOURCE_LATENCY_MS": "100", "RECON_BATCH_MAX_CONCURRENT_JOBS": "1"}


@contextmanager
def leases(db: Path) -> Iterator[SqlLeases]:
    """The database's leases, read by the watchers' clock (today is :data:`TODAY`)."""
    storage = open_storage(StorageSettings(db_url=f"sqlite:///{db}", mode="naive"))
    try:
        yield SqlLeases(storage, clock=ShiftedClock(date.fromisoformat(TODAY)))
    finally:
        storage.close()


def calendar(tmp_path: Path) -> str:
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps({MONTH: "2025-06-06"}))
    return str(path)


def watch_args(db: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["watch", "--db", f"sqlite:///{db}", "--calendar", calendar(tmp_path),
            "--districts", "1,2,F", *extra]  # fmt: skip


def env(**extra: str) -> dict[str, str]:
    return {"RECON_TODAY": TODAY, "RECON_STORAGE_LEASE_TTL_S": str(TTL_S), **extra}


def checks(db: Path) -> dict[str, Any]:
    """Jobs (status, checks, last day) and the timeline's (job, as-of) pairs."""
    with closing(sqlite3.connect(db)) as conn:
        jobs = conn.execute(
            "SELECT id, district, status, reason, checks, last_check_date, final_as_of FROM jobs"
            " ORDER BY district"
        ).fetchall()
        pairs = conn.execute("SELECT job_id, as_of FROM timeline ORDER BY job_id, as_of").fetchall()
        metrics = conn.execute(
            "SELECT district, as_of, metrics FROM month_end_snapshots ORDER BY district"
        ).fetchall()
    return {"jobs": jobs, "pairs": pairs, "month_end": metrics}


def entries(db: Path) -> int:
    if not db.exists():
        return 0
    with closing(sqlite3.connect(db)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM timeline").fetchone()[0])
        except sqlite3.OperationalError:  # not made yet
            return 0


def assert_each_day_checked_once(found: dict[str, Any]) -> None:
    assert len(found["pairs"]) == len(set(found["pairs"]))
    per_job: dict[int, int] = {}
    for job_id, _ in found["pairs"]:
        per_job[job_id] = per_job.get(job_id, 0) + 1
    assert {j[0]: per_job.get(j[0], 0) for j in found["jobs"]} == {
        j[0]: j[4] for j in found["jobs"]
    }  # `checks` counts each once


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted tick of the same watch, alone on its database."""
    tmp = tmp_path_factory.mktemp("reference")
    mp = pytest.MonkeyPatch()
    for key, value in env().items():
        mp.setenv(key, value)
    try:
        assert main(watch_args(tmp / "ref.db", tmp, "--once")) == 0
    finally:
        mp.undo()
    found = checks(tmp / "ref.db")
    assert {j[2] for j in found["jobs"]} == {"completed"}
    return found


def test_a_standby_takes_over_a_killed_watcher_without_checking_a_day_twice(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    db = tmp_path / "two.db"
    first = recon(*watch_args(db, tmp_path, "--every", "1"), env=env(**SLOW))
    with leases(db) as store:
        poll(lambda: store.holder("watcher"), first)
    second = recon(*watch_args(db, tmp_path, "--every", "1"), env=env(**SLOW))
    try:
        poll(lambda: entries(db) >= 2 or None, first)  # the first is mid-tick
        first.send_signal(signal.SIGKILL)
        first.communicate()
        killed = time.monotonic()
        with leases(db) as store:
            taken = poll(lambda: _held_by(store, second.pid), second)
        assert time.monotonic() - killed < 2 * TTL_S
        assert taken.holder.pid == second.pid
        poll(lambda: checks(db)["jobs"] and {j[2] for j in checks(db)["jobs"]} == {"completed"}
             or None, second)  # fmt: skip
    finally:
        second.send_signal(signal.SIGTERM)
        code, err = finish(second)
    assert code == 0, err
    assert "standing by: the watcher is" in err
    found = checks(db)
    assert_each_day_checked_once(found)
    assert found == reference


def _held_by(store: Any, pid: int) -> Any:
    record = store.holder("watcher")
    return record if record is not None and record.holder.pid == pid else None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_watcher_mid_tick_cleanly(
    tmp_path: Path, reference: dict[str, Any], sig: signal.Signals
) -> None:
    db = tmp_path / "term.db"
    proc = recon(*watch_args(db, tmp_path, "--every", "1"), env=env(**SLOW))
    poll(lambda: entries(db) >= 2 or None, proc)
    proc.send_signal(sig)  # SIGINT: Ctrl-C
    code, err = finish(proc)
    assert code == 0, err
    assert f"{sig.name}: stopping" in err
    with leases(db) as store:
        assert store.holder("watcher") is None  # released, not left to expire
    with closing(sqlite3.connect(db)) as conn:
        (stopped,) = conn.execute("SELECT stopped_at FROM watcher_status").fetchone()
        statuses = {r[0] for r in conn.execute("SELECT status FROM jobs")}
    assert stopped is not None
    assert "cancelled" not in statuses  # interrupted, not cancelled: the next watcher goes on
    assert_each_day_checked_once(checks(db))  # every check's writes are in
    again = recon(*watch_args(db, tmp_path, "--once"), env=env())
    code, err = finish(again)
    assert code == 0, err
    found = checks(db)
    assert_each_day_checked_once(found)
    assert found == reference
