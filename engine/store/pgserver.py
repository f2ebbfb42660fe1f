"""A throwaway PostgreSQL server: Debian's binaries, a new data folder, 127.0.0.1.

For ``recon cluster`` (every part of a cluster on one machine), ``recon bench
--suite scale`` and the tests: nothing to install or configure beyond Debian's
``postgresql`` package, and nothing left behind when it stops. The server trusts
local connections (``initdb -A trust``) and listens on the loopback address
only; ``fsync`` is off, so it is for work you can lose, never for real data.
"""

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

from engine.errors import ConfigError


class PgServer:
    """One server in a temporary folder. :meth:`start`, :meth:`restart`, :meth:`stop`."""

    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="recon-pg-"))
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")

    def start(self) -> PgServer:
        if not (self.data / "PG_VERSION").exists():
            _run([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.data / "log")
        _run([_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l", log, "start"])
        return self

    def restart(self) -> None:
        """Stop (closing every connection) and start again on the same port."""
        self._stop()
        self.start()

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self._stop()
        finally:
            shutil.rmtree(self.data, ignore_errors=True)

    def _stop(self) -> None:
        _run([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])


@contextmanager
def throwaway_postgres() -> Iterator[PgServer]:
    """A started server, stopped and deleted on exit."""
    server = PgServer()
    try:
        yield server.start()
    finally:
        server.stop()


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise ConfigError(
            "postgresql",
            name,
            "PostgreSQL's programs are not installed: apt-get install postgresql",
        )
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


__all__ = ["PgServer", "throwaway_postgres"]
