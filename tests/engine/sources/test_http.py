"""The HTTP source, against the simulator served on 127.0.0.1."""

from __future__ import annotations

from datetime import date, timedelta

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
