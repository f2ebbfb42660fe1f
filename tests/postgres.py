"""A throwaway PostgreSQL server for tests: Debian's binaries, a temporary data
directory, 127.0.0.1 on a free port. Missing binaries fail the test (CI
installs the ``postgresql`` package), they never skip it.

:func:`restart` restarts a running one on the same port (a fault: a server
restart in the middle of work)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"PostgreSQL's {name} not found: apt-get install postgresql"
    return found[-1]


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _run(args: list[str]) -> None:
    subprocess.run(_as_postgres(args), check=True, capture_output=True)


_data: dict[str, Path] = {}  # server URL -> its data directory


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/", 1)[0]


def restart(url: str) -> None:
    """Restart the server of ``url`` (a URL of one of its databases) on its port:
    every session is cut (fast shutdown), and the server is back on return."""
    (data,) = [d for u, d in _data.items() if _port(u) == _port(url)]
    _run([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-l", str(data / "log"), "restart"])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield the SQLAlchemy URL of its ``postgres`` database."""
    data = Path(tempfile.mkdtemp(prefix="recon-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    _run([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run([_bin("pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(data / "log"), "start"])
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    _data[url] = data
    try:
        yield url
    finally:
        del _data[url]
        _run([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(data, ignore_errors=True)
