"""The API under a bounded load from a second process while a batch runs,
with a token configured: no errors, p99 reported; POSTs without it refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.engine.api.test_api import free_port, wait_until_up

from .conftest import soak
from .test_crash import ROOT

TOKEN = "reliability-token"


def test_read_endpoints_under_load_while_a_batch_runs(
    tmp_path: Path, figures: Callable[..., None]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env["RECON_API_TOKEN"] = TOKEN
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "api", "--port", str(port),
             "--db", f"sqlite:///{tmp_path / 'load.db'}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_until_up(client, api, log)
            listed = [{"districtId": str(d), "targetMonth": "2025-03"} for d in range(1, 21)]
            jobs = {"jobs": listed}
            refused = client.post("/api/reconciliation/performance/batch/process", json=jobs)
            assert refused.status_code == 401
            started = client.post(
                "/api/reconciliation/performance/batch/process",
                json=jobs, headers={"Authorization": f"Bearer {TOKEN}"},
            )  # fmt: skip
            assert started.status_code == 200, started.text
            requests = 5000 if soak() else 1500
            load = subprocess.run(
                [sys.executable, "-m", "tests.reliability.load_client", url, str(requests), "20"],
                cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
            )  # fmt: skip
            result = json.loads(load.stdout)
            batch = client.get(f"/api/reconciliation/performance/batch/{started.json()['batchId']}")
            assert batch.status_code == 200
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=60)
    assert result["requests"] == requests and result["errors"] == 0, result["first_errors"]
    figures(clients=20, requests=result["requests"], errors=0,
            p50_ms=round(result["p50_ms"], 1), p99_ms=round(result["p99_ms"], 1),
            unauthorized_posts_refused=1)  # fmt: skip
