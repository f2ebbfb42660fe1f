"""``recon cluster`` (``make cluster``) as a user runs it: a real throwaway PostgreSQL,
worker processes, the API and the dashboard; a batch started over the API is run by
the workers; Ctrl-C stops every part and deletes the database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.engine.api.procs import free_port

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 180.0  # generous: the machine is shared
API = "/api/reconciliation"


def _until(check: Callable[[], Any], proc: subprocess.Popen[str], log: Path) -> Any:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        assert proc.poll() is None, log.read_text()
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out:\n{log.read_text()}")


def test_cluster_serves_runs_a_batch_on_its_workers_and_stops_everything(tmp_path: Path) -> None:
    api_port, dashboard_port = free_port(), free_port()
    log = tmp_path / "cluster.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env |= {"RECON_SOURCE_LATENCY_MS": "5", "RECON_WATCH_EMBEDDED": "false"}
    command = [
        sys.executable, "-m", "engine.cli", "cluster", "--workers", "2",
        "--api-port", str(api_port), "--dashboard-port", str(dashboard_port),
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=out, stderr=out)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as api:
            workers = _until(lambda: _alive(api.get(f"{API}/workers").json()), proc, log)
            assert len(workers) == 2
            dashboard = f"http://127.0.0.1:{dashboard_port}/_stcore/health"
            _until(lambda: httpx.get(dashboard).status_code == 200, proc, log)
            body = {"targetMonth": "2025-05", "districtIds": ["1", "2", "3", "F"]}
            started = api.post(f"{API}/jobs", json=body)
            assert started.status_code == 200, started.text
            batch = f"{API}/performance/batch/{started.json()['batchId']}"
            done = _until(lambda: _finished(api.get(batch).json()), proc, log)
            assert {item["status"] for item in done["items"]} == {"succeeded"}, done
            # the workers ran them (each worker's count is written with its heartbeat; the
            # watcher's tick may have given them more)
            _until(lambda: _items_done(api.get(f"{API}/workers").json()) >= 4, proc, log)
        text = log.read_text()
        assert f"http://127.0.0.1:{dashboard_port}" in text, text
        found = re.search(r"data in (\S+), deleted", text)
        assert found, text
        folder = Path(found.group(1))
        assert (folder / "PG_VERSION").exists()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 4, "two workers, the API and the dashboard"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    assert code == 0, log.read_text()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not folder.exists(), "the throwaway database is deleted"


def _alive(found: dict[str, Any]) -> list[dict[str, Any]] | None:
    alive = [w for w in found["workers"] if w["state"] == "alive"]
    return alive if len(alive) == 2 else None


def _items_done(found: dict[str, Any]) -> int:
    return sum(w["done"] for w in found["workers"])


def _finished(batch: dict[str, Any]) -> dict[str, Any] | None:
    return batch if batch["done"] else None
