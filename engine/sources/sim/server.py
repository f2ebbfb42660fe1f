"""The simulator over HTTP on a loopback address, with fault modes for reliability tests.

URLs are shaped like the real dashboard's (``/export.aspx?type=CSV&report=...``,
see :func:`engine.sources.parse.report_param`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Collection
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.cancel import CancelToken
from engine.domain.models import validate_district
from engine.errors import ConfigError, ItemCancelled, ParseError, SourceError
from engine.sources.parse import Report, parse_report_param
from engine.sources.sim.simulator import Simulator

_FAULTS = ("error", "reset", "hang")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: SimulatorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up is expected under fault injection.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.app.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the CLI prints its own lines."""


class SimulatorServer:
    """The simulator over HTTP on a loopback address, in a background thread.

    Use :func:`serve_simulator` to start one; ``url`` is its base URL and
    ``shutdown()`` stops it (also as a context manager).
    """

    def __init__(
        self,
        sim: Simulator,
        host: str,
        port: int,
        *,
        failure_rate: float,
        hang_s: float,
        malformed: Collection[str],
        missing: Collection[str],
    ) -> None:
        self.sim = sim
        self._failure_rate = failure_rate
        self._hang_s = hang_s
        self._malformed = {validate_district(d) for d in malformed}
        self._missing = {validate_district(d) for d in missing}
        self._stopping = CancelToken()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults = 0
        try:
            self._httpd = _HTTPServer((host, port), _Handler)
        except OSError as exc:
            raise ConfigError("port", port, f"cannot listen on {host}:{port}: {exc}") from exc
        self._httpd.app = self
        bound_host, bound_port = self._httpd.server_address[:2]
        self.url = f"http://{bound_host!s}:{bound_port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that shutdown() returns promptly
            name="simulator-http",
            daemon=True,
        )
        self._thread.start()

    def requests(self, report: str | None = None) -> int:
        """Export requests received so far, of one report type or all."""
        with self._lock:
            return self._counts[report] if report else sum(self._counts.values())

    def shutdown(self) -> None:
        self._stopping.cancel("simulator server stopped")
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query, keep_blank_values=True)
        report = query.get("report", [""])[0]
        fault = self._count(report.split("~")[0])
        if fault is not None:
            self._inject(fault, h)
            return
        status, body = self._respond(url.path, query, report)
        data = body.encode("utf-8")
        h.send_response(status)
        h.send_header("Content-Type", "text/csv; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _count(self, report: str) -> str | None:
        """Count a request; the fault to inject, evenly spread at ``failure_rate``."""
        with self._lock:
            self._counts[report] += 1
            n = sum(self._counts.values())
            if math.floor(n * self._failure_rate) == math.floor((n - 1) * self._failure_rate):
                return None
            self._faults += 1
            return _FAULTS[(self._faults - 1) % len(_FAULTS)]

    def _inject(self, fault: str, h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        if fault == "error":
            h.send_error(500, "simulated server error")
        elif fault == "reset":
            # Linger 0 makes close() send a TCP reset instead of a clean end.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        else:
            with contextlib.suppress(ItemCancelled):
                self._stopping.wait(self._hang_s)

    def _respond(self, path: str, query: dict[str, list[str]], report: str) -> tuple[int, str]:
        if path != "/export.aspx":
            return 404, "not found"
        if query.get("type", [""])[0].upper() != "CSV":
            return 400, "expected type=CSV"
        try:
            req = parse_report_param(report)
        except ParseError as exc:
            return 400, f"malformed report parameter: {exc}"
        if req.report not in {r.value for r in Report} or req.district in self._missing:
            return 404, "no such report or district"
        try:
            return 200, self._render(req.report, req.district, req.month, req.collection_date)
        except SourceError as exc:
            return (500 if exc.transient else 404), str(exc)
        except ConfigError as exc:  # e.g. a collection date beyond the simulated years
            return 400, str(exc)
        except ItemCancelled:
            return 503, "server stopping"

    def _render(self, report: str, district: str, month: str, collected: date) -> str:
        if report == Report.DISTRICT_SUMMARY:
            return self.sim.district_summary_csv(month, collected, self._stopping)
        if report == Report.DISTRICT_PERFORMANCE:
            return self.sim.district_performance_csv(district, month, collected, self._stopping)
        text = self.sim.club_performance_csv(district, month, collected, self._stopping)
        # A permanently broken export: cut off mid-file, as a failed transfer would.
        return text[: len(text) // 2] if district in self._malformed else text


def serve_simulator(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    failure_rate: float = 0.0,
    hang_s: float = 120.0,
    malformed: Collection[str] = (),
    missing: Collection[str] = (),
) -> SimulatorServer:
    """Serve ``sim``'s exports over HTTP in a background thread.

    :param host: a loopback address; anything else is refused (ConfigError).
    :param port: 0 picks a free port (see ``.url``).
    :param failure_rate: share of requests that fail transiently, evenly spread
        and cycling through HTTP 500, a connection reset and a hang.
    :param hang_s: how long a hang lasts; make it longer than the client's timeout.
    :param malformed: districts whose club performance export is served broken.
    :param missing: districts answered with 404.
    """
    _check_loopback(host)
    return SimulatorServer(
        sim,
        host,
        port,
        failure_rate=failure_rate,
        hang_s=hang_s,
        malformed=malformed,
        missing=missing,
    )


def _check_loopback(host: str) -> None:
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise ConfigError("host", host, "the simulator only listens on IPv4 loopback (127.0.0.1)")
