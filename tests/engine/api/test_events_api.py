"""GET /api/reconciliation/events over real HTTP on 127.0.0.1."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from engine.store.events import EventKind, NewEvent
from tests.engine.api.test_api import make_served

EVENTS = "/api/reconciliation/events"


def test_events_are_listed_by_month_and_kind_in_camel_case_without_local_paths(
    tmp_path: Path, db_url: str
) -> None:
    with ExitStack() as stack:
        console, client = make_served(stack, db_url)
        console.start_batch("2025-06", districts=["1", "2"])
        console.batch.run(until_idle=True)
        console.alerts.evaluate_months()
        error = f"ParseError: {tmp_path}/exports/2025-07-01/clubperformance_9.csv: bad header"
        console.alerts.emit(
            NewEvent(
                key="job-failed:99", kind=EventKind.JOB_FAILED, month="2025-07",
                district="9", job_id=99, payload={"error": error, "run_id": 3},
            )
        )  # fmt: skip

        answer = client.get(EVENTS, params={"month": "2025-06", "kind": "month-final"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["total"] == 1
        [final] = body["events"]
        assert (final["kind"], final["targetMonth"], final["delivered"]) == (
            "month-final", "2025-06", False,
        )  # fmt: skip
        assert final["payload"]["districts"] == 2 and "finalAsOf" in final["payload"]

        [failed] = client.get(EVENTS, params={"kind": "job-failed"}).json()["events"]
        assert failed["districtId"] == "9" and failed["jobId"] == 99
        assert str(tmp_path) not in failed["payload"]["error"]
        assert "clubperformance_9.csv" in failed["payload"]["error"]

        everything = client.get(EVENTS).json()
        assert everything["total"] >= 2
        assert client.get(EVENTS, params={"kind": "nonsense"}).status_code == 422
        assert client.get(EVENTS, params={"month": "2025-13"}).status_code in (400, 422)
