"""The API under a bounded load from a second process while a batch runs,
with a token configured: no errors, p99 reported; POSTs without it refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.engine.api.test_api import free_port, wait_until_up

from .conftest import MONTH, ROOT, Figures, clean_env, recon, soak

TOKEN = "reliability-token"
CLIENTS = 20
BATCH = "/api/reconciliation/performance/batch"


def test_read_endpoints_under_load_while_a_batch_runs(tmp_path: Path, figures: Figures) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    requests = 5000 if soak() else 1500
    with log.open("wb") as out:
        api = subprocess.Popen(
            recon("api", "--port", str(port), "--db", f"sqlite:///{tmp_path / 'load.db'}"),
            cwd=ROOT, env=clean_env(RECON_API_TOKEN=TOKEN), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_until_up(client, api, log)
            listed = [{"districtId": str(d), "targetMonth": MONTH} for d in range(1, 21)]
            refused = client.post(f"{BATCH}/process", json={"jobs": listed})
            started = client.post(
                f"{BATCH}/process",
                json={"jobs": listed}, headers={"Authorization": f"Bearer {TOKEN}"},
            )  # fmt: skip
            assert started.status_code == 200, started.text
            load = subprocess.run(
                [sys.executable, "-m", "tests.reliability.load_client", url, str(requests),
                 str(CLIENTS)],
                cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
            )  # fmt: skip
            result = json.loads(load.stdout)
            batch = client.get(f"{BATCH}/{started.json()['batchId']}")
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=60)
    figures.config(clients=CLIENTS, requests_planned=requests, token_set=True,
                   batch_districts=len(listed))  # fmt: skip
    figures.measure(
        requests=result["requests"], errors=result["errors"],
        p50_ms=round(result["p50_ms"], 1), p99_ms=round(result["p99_ms"], 1),
        post_without_token_status=refused.status_code, batch_read_status=batch.status_code,
        tracebacks_in_api_log=log.read_text(errors="replace").count("Traceback"),
    )  # fmt: skip
    assert refused.status_code == 401
    assert batch.status_code == 200
    assert result["requests"] == requests and result["errors"] == 0, result["first_errors"]
