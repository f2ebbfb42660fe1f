"""One process at a time works a month, across real processes on one SQLite file:
two ``recon run`` at once, ``recon run --wait``, ``recon api`` beside ``recon run``,
and a holder killed with SIGKILL whose month is taken over after the lease's ttl."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from engine.app.console import open_storage
from engine.cli.core import main
from engine.settings import StorageSettings
from engine.store.leases import LeaseRecord, SqlLeases
from tests.engine.api.test_api import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-06"
DISTRICTS = "1,2,F"
JOBS = "/api/reconciliation/jobs"
BATCH = "/api/reconciliation/performance/batch"
# Slow enough that a run lasts seconds (3 districts one at a time, ~20 checks each), so
# that a second process started with it finds the month still worked.
SLOW = ("--concurrency", "1", "--latency-ms", "100")
DEADLINE_S = 300.0
HOST = socket.gethostname()
T = TypeVar("T")


def recon(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=ROOT, env=clean | (env or {}), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def run_args(url: str, *extra: str) -> list[str]:
    return ["run", "--month", MONTH, "--districts", DISTRICTS, "--db", url, *extra]


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a process; its exit code and its stderr."""
    _, err = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, err


def state(db: Path) -> dict[str, Any]:
    """The whole reconciliation state, without the wall-clock times of the run."""
    with closing(sqlite3.connect(db)) as conn:
        return {
            "runs": conn.execute("SELECT id, month, mode FROM runs ORDER BY id").fetchall(),
            "jobs": conn.execute(
                "SELECT id, run_id, district, month, status, phase, reason, error, final_as_of,"
                " last_check_date, checks, significant_changes, stable_days, extension_days,"
                " last_significant_as_of, attempts, significant_dates FROM jobs ORDER BY id"
            ).fetchall(),
            "timeline": conn.execute(
                "SELECT job_id, as_of, data_month, metrics, changes, significant, note"
                " FROM timeline ORDER BY job_id, as_of"
            ).fetchall(),
            "month_end": conn.execute(
                "SELECT district, month, as_of, metrics, job_id FROM month_end_snapshots"
                " ORDER BY district, month"
            ).fetchall(),
        }


@contextmanager
def leases(db: Path) -> Iterator[SqlLeases]:
    storage = open_storage(StorageSettings(db_url=f"sqlite:///{db}", mode="naive"))
    try:
        yield SqlLeases(storage)
    finally:
        storage.close()


def held_by(db: Path, proc: subprocess.Popen[Any]) -> LeaseRecord:
    """Wait until ``proc`` holds the month; its lease."""
    with leases(db) as store:
        found = poll(lambda: store.holder(f"month:{MONTH}"), proc)
        while found.holder.pid != proc.pid:
            found = poll(lambda: store.holder(f"month:{MONTH}"), proc)
        return found


def poll(check: Callable[[], T | None], proc: subprocess.Popen[Any]) -> T:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        found = check()
        if found is not None:
            return found
        assert proc.poll() is None, "the process ended first"
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run of the same seed, alone on its database."""
    db = tmp_path_factory.mktemp("reference") / "ref.db"
    assert main(run_args(f"sqlite:///{db}")) == 0
    return state(db)


def test_two_runs_at_once_one_works_the_other_names_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    procs = [recon(*run_args(url, *SLOW)) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    winner, loser = (0, 1) if results[0][0] == 0 else (1, 0)
    message = results[loser][1].strip()
    assert "\n" not in message, "one line"
    assert message.startswith(f"error: month='{MONTH}': worked by {HOST} pid {procs[winner].pid}")
    assert " since 20" in message and message.endswith(" UTC")


def test_two_runs_that_wait_leave_the_state_of_one_run(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    db = tmp_path / "wait.db"
    procs = [recon(*run_args(f"sqlite:///{db}", *SLOW, "--wait")) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    waited = [n for n, (_, err) in enumerate(results) if "waiting:" in err]
    assert len(waited) == 1, results
    other = procs[1 - waited[0]]
    assert f"waiting: {MONTH} is worked by {HOST} pid {other.pid} since" in results[waited[0]][1]
    assert "closed while this run waited" in results[waited[0]][1]
    assert state(db) == reference


def test_an_api_batch_and_a_cli_run_of_one_month(tmp_path: Path) -> None:
    db = tmp_path / "api.db"
    url = f"sqlite:///{db}"
    port = free_port()
    log = tmp_path / "api.log"
    slow = {"RECON_SOURCE_LATENCY_MS": "100"}
    with log.open("w") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "api", "--port", str(port), "--db", url],
            cwd=ROOT, env={k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
            | slow, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            wait_until_up(client, api, log)
            body = {"targetMonth": MONTH, "districtIds": DISTRICTS.split(","),
                    "config": {"maxConcurrentJobs": 1}}  # fmt: skip
            started = client.post(JOBS, json=body)
            assert started.status_code == 200, started.text
            code, err = finish(recon(*run_args(url)))  # while the API works the month
            assert code == 2
            assert f"worked by {HOST} pid {api.pid} since" in err
            batch_id = started.json()["batchId"]
            assert client.post(f"{BATCH}/{batch_id}/cancel").status_code == 200
            with leases(db) as store:  # the cancelled batch ends and frees the month
                poll(lambda: True if store.holder(f"month:{MONTH}") is None else None, api)

            cli = recon(*run_args(url, *SLOW))
            holder = held_by(db, cli)
            refused = client.post(JOBS, json=body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == f"month='{MONTH}': worked by {holder.describe()}"
            assert finish(cli)[0] == 0
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=60)
    jobs = state(db)["jobs"]
    latest = max(row[1] for row in jobs)  # the CLI's run, after the cancelled one
    assert {row[4] for row in jobs if row[1] == latest} == {"completed"}


def test_a_killed_holder_on_this_host_frees_the_month_at_once(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    url = f"sqlite:///{db}"
    ttl = {"RECON_STORAGE_LEASE_TTL_S": "600"}  # far longer than the test: not waited out
    first = recon(*run_args(url, *SLOW), env=ttl)
    held = held_by(db, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    with leases(db) as store:
        dead = store.holder(f"month:{MONTH}")
        assert dead is not None and dead.holder.pid == first.pid, "still stored as held"
    code, err = finish(recon(*run_args(url), env=ttl))  # no --wait needed
    assert code == 0, err
    assert f"pid={first.pid}), which has exited" in err
    with leases(db) as store:
        assert store.holder(f"month:{MONTH}") is None, "released at the end of the run"
    after = state(db)
    assert len(after["runs"]) == 1, "the killed run was continued, not started again"
    assert {row[4] for row in after["jobs"]} == {"completed"}
    assert held.expires_at > held.acquired_at
