"""Two processes on one month (issue 18, defect 1): a month is worked by one
process at a time, across processes. A second ``recon run`` exits 2 naming the
holder; the API answers 409 the same way; either way the final state is that
of one uninterrupted run. On SQLite and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from engine.cli.core import main
from tests.engine.api.test_api import free_port, wait_until_up

from .conftest import MONTH, ROOT, Figures, Reference, clean_env, districts, recon, run_args
from .state import compare, dump
from .test_crash import entries

# Simulated latency per fetch, so that a run lasts a few seconds: long enough for the
# other process to start while the first still holds the month. It changes no figure.
LATENCY_MS = 50
BATCH = "/api/reconciliation/performance/batch"


def slow_run(db: str) -> list[str]:
    return recon(*run_args(db), "--latency-ms", str(LATENCY_MS))


def start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, cwd=ROOT, env=clean_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def one_line(text: str) -> str:
    """Rich wraps long messages: join them back for matching."""
    return " ".join(text.split())


def test_two_recon_runs_at_once_on_one_month_work_it_once(
    db_url: str, backend: str, figures: Figures, uninterrupted: Reference
) -> None:
    db = db_url
    assert main(["status", "--month", MONTH, "--db", db]) == 0  # the schema
    procs = [start(slow_run(db)) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    diff = compare(uninterrupted(run_args()), dump(db))
    figures.config(processes=2, districts=len(districts().split(",")), latency_ms=LATENCY_MS)
    tracebacks = sum(err.count("Traceback") for _, err in outputs)
    measured = dict(exit_codes=sorted(codes), tracebacks=tracebacks, **diff.figures())
    figures.measure(**{(k if backend == "sqlite" else f"{backend}_{k}"): v
                       for k, v in measured.items()})  # fmt: skip

    assert sorted(codes) == [0, 2], f"exit codes {codes}; {diff.describe(3)}"
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    refusal = one_line(outputs[loser][1])
    assert str(procs[winner].pid) in refusal, f"the refusal does not name the holder: {refusal}"
    assert diff.none, diff.describe()


def test_api_batch_and_recon_run_on_one_month_work_it_once(
    tmp_path: Path, db_url: str, backend: str, figures: Figures, uninterrupted: Reference
) -> None:
    db = db_url
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            recon("api", "--port", str(port), "--db", db),
            cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until_up(client, api, log)
            cli = start(slow_run(db))
            wait_for_work(db, cli)
            listed = [{"districtId": d, "targetMonth": MONTH} for d in districts().split(",")]
            posted = client.post(f"{BATCH}/process", json={"jobs": listed})
            cli_running_at_post = cli.poll() is None
            cli_err = cli.communicate(timeout=300)[1]
            api_batch = wait_for_batch(client, posted)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=60)
    diff = compare(uninterrupted(run_args()), dump(db))
    figures.config(districts=len(listed), latency_ms=LATENCY_MS)
    tracebacks = cli_err.count("Traceback") + log.read_text(errors="replace").count("Traceback")
    measured = dict(cli_exit_code=cli.returncode, api_status_code=posted.status_code,
                    api_batch=api_batch, tracebacks=tracebacks, **diff.figures())  # fmt: skip
    figures.measure(**{(k if backend == "sqlite" else f"{backend}_{k}"): v
                       for k, v in measured.items()})  # fmt: skip

    assert cli_running_at_post, "the run ended before the POST: raise the latency"
    assert cli.returncode == 0, cli_err[-2000:]
    assert posted.status_code == 409, f"{posted.text}; {diff.describe(3)}"
    assert str(cli.pid) in posted.text, f"the 409 does not name the holder: {posted.text}"
    assert diff.none, diff.describe()


def wait_for_work(db: str, proc: subprocess.Popen[str]) -> None:
    """Until ``proc`` has stored its first timeline entry (it holds the month)."""
    deadline = time.monotonic() + 60
    while entries(db) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the database for the first entry


def wait_for_batch(client: httpx.Client, posted: httpx.Response) -> str:
    """The final status of the batch a POST started ("none" if it started none)."""
    if posted.status_code != 200:
        return "none"
    url = f"{BATCH}/{posted.json()['batchId']}"
    deadline = time.monotonic() + 120
    while (status := client.get(url).json()["status"]) == "running":
        assert time.monotonic() < deadline, "the API's batch did not finish"
        time.sleep(0.1)  # polling the API for the batch's end
    return str(status)
