"""`recon api` as a real process on a free port of 127.0.0.1, for tests that need the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 120.0  # generous: the machine is shared


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def recon_api(
    folder: Path, *args: str, db: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``recon api --port P --db DB ARGS`` until the block ends (``DB``: by default
    ``<folder>/served.db``; its log goes to ``<folder>/api.log``).

    Yields the base URL (once ``/healthz`` answers ok) and the process; stops it
    with SIGTERM at the end and checks that it exited cleanly.
    """
    port = free_port()
    db = db or f"sqlite:///{folder / 'served.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    log = folder / "api.log"
    command = [sys.executable, "-m", "engine.cli", "api", "--port", str(port), "--db", db, *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_until_up(client, proc, log)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()  # a graceful stop


def wait_until_up(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        assert proc.poll() is None, log.read_text()
        try:
            if client.get("/healthz").json()["status"] == "ok":
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"recon api did not come up: {log.read_text()}")
