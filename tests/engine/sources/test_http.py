"""The HTTP source, against the simulator served on 127.0.0.1."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.errors import ParseError, SourceError
from engine.sources.http import HttpSource
from engine.sources.sim import (
    Simulator,
    SimulatorServer,
    SimulatorSource,
    serve_simulator,
)
from tests.engine.sources.common import CLOSING, MONTH, same


def test_http_source_matches_the_in_process_simulator(
    sim: Simulator, server: SimulatorServer
) -> None:
    http = HttpSource(server.url, timeout_s=10, share_summary=True)
    memory = SimulatorSource(sim, share_summary=False)
    try:
        for day in (date(2025, 4, 1), CLOSING, CLOSING + timedelta(days=1)):
            for district in ("42", "F"):
                snap = http.fetch(district, MONTH, day)
                same(snap, memory.fetch(district, MONTH, day))
                assert snap.source.startswith(f"{server.url}/export.aspx?type=CSV&report=")
        assert http.districts(MONTH, CLOSING) == sim.districts()
    finally:
        http.close()


def test_http_errors_are_classified(server: SimulatorServer) -> None:
    http = HttpSource(server.url, timeout_s=10, share_summary=False)
    day = date(2025, 4, 2)
    try:
        with pytest.raises(SourceError) as missing:
            http.fetch("9", MONTH, day)
        assert not missing.value.transient and "HTTP 404" in str(missing.value)
        with pytest.raises(SourceError) as unknown:
            http.fetch("131", MONTH, day)
        assert not unknown.value.transient
        with pytest.raises(ParseError) as broken:
            http.fetch("7", MONTH, day)
        assert broken.value.source.startswith(server.url)
        assert "clubperformance~7~" in broken.value.source.replace("%7E", "~")
        assert broken.value.line is not None
    finally:
        http.close()


def test_transient_faults_500_reset_and_hang(sim: Simulator) -> None:
    with serve_simulator(sim, failure_rate=1.0, hang_s=30) as failing:
        http = HttpSource(failing.url, timeout_s=0.5, share_summary=False)
        messages = []
        try:
            for _ in range(3):
                with pytest.raises(SourceError) as info:
                    http.fetch("42", MONTH, date(2025, 4, 2))
                assert info.value.transient
                messages.append(str(info.value))
        finally:
            http.close()
    assert "HTTP 500" in messages[0]
    assert "connection failed" in messages[1]
    assert "timed out" in messages[2]


def test_half_the_requests_fail_when_asked(sim: Simulator) -> None:
    with serve_simulator(sim, failure_rate=0.5) as flaky:
        http = HttpSource(flaky.url, timeout_s=10, share_summary=False)
        try:
            outcomes = []
            for _ in range(4):
                try:
                    http.districts(MONTH, date(2025, 4, 2))
                    outcomes.append("ok")
                except SourceError as exc:
                    outcomes.append("transient" if exc.transient else "permanent")
        finally:
            http.close()
    assert outcomes == ["ok", "transient", "ok", "transient"]


def oversized(reports: list[str]) -> type[BaseHTTPRequestHandler]:
    """Club exports too large to read: district 1's says so in its Content-Length,
    district 2's never ends (chunked). Each request's ``report=`` goes to ``reports``."""

    class Oversized(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            report = parse_qs(urlsplit(self.path).query)["report"][0]
            reports.append(report)
            self.send_response(200)
            try:
                if report.startswith("clubperformance~1~"):
                    self.send_header("Content-Length", "200000000")
                    self.end_headers()
                    self.wfile.write(b'"Club Number"\r\n' * 1000)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b'"00000038","A club","1"\r\n' * 2000
                while True:  # until the client hangs up
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                return

        def log_message(self, format: str, *args: object) -> None:
            return

    return Oversized


def test_an_export_over_the_cap_is_refused_while_it_streams_in() -> None:
    reports: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), oversized(reports))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    http = HttpSource(url, timeout_s=10, share_summary=False, max_bytes=1_000_000)
    try:
        for district, size in (("01", "200,000,000 bytes"), ("2", "more than 1,000,000 bytes")):
            with pytest.raises(ParseError) as info:
                http.fetch(district, MONTH, date(2025, 4, 2))
            assert info.value.source.startswith(f"{url}/export.aspx?type=CSV&report=")
            message = str(info.value)
            assert f"export of {size} is over the cap of 1,000,000 bytes" in message
            assert "(setting source.max_export_bytes)" in message
    finally:
        http.close()
        server.shutdown()
        server.server_close()
    # The district as the server expects it: the one spelling, "01" is "1".
    assert [r.split("~")[1] for r in reports] == ["1", "2"]
