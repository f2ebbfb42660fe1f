"""PostgreSQL restarted in the middle of a batch: a thread-runner ``recon run`` on
PostgreSQL goes on when the server is restarted (every session cut, connections
refused for a moment): the errors are transient, the items retried, the pool's
dead connections replaced; the month completes with the whole database state of
an uninterrupted run (the suite's reference, on SQLite), nothing duplicated.

The server is this test's own throwaway one (tests/postgres.py), restarted on its
port with ``pg_ctl restart``: the session's shared server is not disturbed.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from engine.store.pg import create_database
from tests.postgres import postgres_server, restart

from .conftest import ROOT, Figures, Reference, clean_env, recon, run_args
from .state import compare, dump
from .test_crash import entries, health

LATENCY_MS = {"naive": 10, "optimized": 40}  # per request: runs of a few seconds
RETRY_DELAY_MS = 500  # the first retry of a check the restart failed (default 5 s)
# A retried check counts one more attempt of its job; the outcome is the same. (And the
# run records its storage mode: the reference's is the default, optimized.)
RETRIED = ("jobs.attempts", "runs.mode")


@pytest.mark.parametrize("mode", ["naive", "optimized"])  # every write at once; queued
def test_a_postgres_restart_mid_batch_and_the_run_completes_as_uninterrupted(
    mode: str, figures: Figures, uninterrupted: Reference
) -> None:
    expected = uninterrupted(run_args())
    total = sum(1 for k in expected if k.kind == "entry")
    with postgres_server() as server:
        db = create_database(server, "restarted")
        options = ("--latency-ms", str(LATENCY_MS[mode]), "--concurrency", "2", "--mode", mode)
        run = subprocess.Popen(
            recon(*run_args(db), *options), cwd=ROOT, stdout=subprocess.DEVNULL,
            env=clean_env(RECON_BATCH_RETRY_DELAY_MS=str(RETRY_DELAY_MS)),
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while run.poll() is None and entries(db) < total // 4 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the database for the restart point
        at = entries(db)
        restarted = run.poll() is None
        if restarted:
            restart(db)
        err = run.communicate(timeout=300)[1]
        diff = compare(expected, dump(db), ignore=RETRIED)
        found = health(db)
    figures.config(**{f"{mode}_latency_ms": LATENCY_MS[mode]}, retry_delay_ms=RETRY_DELAY_MS,
                   restart_after_entries=total // 4)  # fmt: skip
    measured = dict(restarted_at_entries=at, entries=total, exit_code=run.returncode,
                    **found, **diff.figures())  # fmt: skip
    figures.measure(**{f"{mode}_{k}": v for k, v in measured.items()})

    assert restarted, "the run finished before the restart: raise the latency"
    assert at < total, "the restart came after the last entry"
    assert run.returncode == 0, err[-3000:]
    assert found["duplicate_entries"] == 0
    assert diff.none, diff.describe()
