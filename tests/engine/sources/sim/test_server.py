"""The simulator served over HTTP."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from engine.errors import ConfigError
from engine.sources.parse import Report, parse_export, report_param
from engine.sources.sim import (
    Simulator,
    serve_simulator,
)


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(seed=42)


def test_server_answers_bad_requests_and_refuses_other_hosts(sim: Simulator) -> None:
    with pytest.raises(ConfigError):
        serve_simulator(sim, "0.0.0.0")
    with serve_simulator(sim, missing={"9"}) as server, httpx.Client(base_url=server.url) as c:
        good = report_param(Report.CLUB_PERFORMANCE, "42", "2025-06", date(2025, 7, 3))

        def get(report: str, kind: str = "CSV", path: str = "/export.aspx") -> httpx.Response:
            return c.get(path, params={"type": kind, "report": report})

        ok = get(good)
        assert ok.status_code == 200 and ok.text.rstrip().endswith("As of 07/02/2025")
        assert get(good.replace("~42~", "~9~")).status_code == 404
        assert get(good.replace("~42~", "~131~")).status_code == 404
        assert get(good.replace("clubperformance", "areaperformance")).status_code == 404
        assert get(good, path="/other").status_code == 404
        assert get(good.replace("6/30/2025", "6/31/2025")).status_code == 400
        assert get("clubperformance~42").status_code == 400
        assert get(good, kind="XLS").status_code == 400
        assert get(good.replace("7/3/2025", "7/3/9999")).status_code == 400
        perf = get(report_param(Report.DISTRICT_PERFORMANCE, "42", "2025-06", date(2025, 7, 3)))
        assert parse_export(perf.text, "perf").report == Report.DISTRICT_PERFORMANCE
        assert server.requests("clubperformance") == 8
