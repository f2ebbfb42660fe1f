"""An unknown distinguished code in one export of a folder source: the run completes,
the code is counted under its own level, and the warning naming file and code reaches
the timeline, ``recon run``'s summary, ``recon status`` and the API (the dashboard:
tests/dashboard/test_pages.py)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from engine.api.app import create_app
from engine.app.console import Console, open_storage
from engine.cli.core import main
from engine.domain.models import JobStatus, Reason
from engine.settings import Settings
from engine.store.storage import Storage
from tests.engine.api.test_api import serving
from tests.engine.sources.common import (
    DISTRICTS,
    MONTH,
    WARNED,
    exports_with_code,
    recon_run,
    results,
)

JOBS = "/api/reconciliation/jobs"


@dataclass(frozen=True)
class Warned:
    folder: Path
    db: Path
    name: str  # the file with the code, relative to the folder
    summary: str  # what `recon run` printed


@pytest.fixture(scope="module")
def warned(tmp_path_factory: pytest.TempPathFactory) -> Warned:
    """``recon run`` on a folder whose :data:`WARNED` export has a club coded ``H``."""
    root = tmp_path_factory.mktemp("warned")
    name = exports_with_code(root / "exports")
    printed, only = io.StringIO(), ",".join(DISTRICTS)
    with contextlib.redirect_stdout(printed):
        code = recon_run(root / "exports", root / "recon.db", MONTH, "--districts", only)
    assert code == 0, printed.getvalue()
    return Warned(root / "exports", root / "recon.db", name, printed.getvalue())


def expected(w: Warned) -> str:
    return (
        f"{w.name}: unknown distinguished status 'H' on 1 club(s) from line 2; "
        "kept and counted as distinguished_level_h_clubs"
    )


@pytest.fixture
def storage(warned: Warned) -> Iterator[Storage]:
    s = open_storage(Settings().with_values("storage", db_url=f"sqlite:///{warned.db}").storage)
    yield s
    s.close()


def test_the_run_completes_and_the_entry_of_that_export_has_the_warning(
    warned: Warned, storage: Storage
) -> None:
    jobs, _ = results(warned.db, MONTH)
    assert sorted(jobs) == sorted(DISTRICTS)
    assert {(j.status, j.reason) for j in jobs.values()} == {
        (JobStatus.COMPLETED, Reason.CLOSING_ENDED)
    }
    district, day = WARNED
    timelines = storage.timelines([j.id for j in jobs.values()])
    flagged = [(d, e) for d, j in jobs.items() for e in timelines[j.id] if e.warnings]
    assert [(d, e.as_of) for d, e in flagged] == [(district, day - timedelta(days=1))]
    (_, entry), text = flagged[0], expected(warned)
    assert entry.warnings == (text,)
    assert entry.metrics["distinguished_level_h_clubs"] == 1.0
    assert str(warned.folder) not in text  # no local path: the file relative to the folder


def test_recon_run_summary_mentions_the_warning(warned: Warned) -> None:
    assert f"warning: district {WARNED[0]}: {expected(warned)}" in warned.summary
    assert f"1 district with export warnings: `recon status --month {MONTH}`" in warned.summary


def test_recon_status_prints_the_warning_and_its_json_rows_carry_it(
    warned: Warned, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", f"sqlite:///{warned.db}"]
    assert main(["status", "--month", MONTH, "--json", *db]) == 0
    rows = {r["district"]: r for r in json.loads(capsys.readouterr().out)}
    assert {d: r["warnings"] for d, r in rows.items()} == {
        d: [expected(warned)] if d == WARNED[0] else [] for d in DISTRICTS
    }
    assert main(["status", "--month", MONTH, *db]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "warning:" in line]
    assert lines == [f"warning: district {WARNED[0]}: {expected(warned)}"]


def test_the_api_timeline_entries_carry_the_warnings(warned: Warned) -> None:
    settings = Settings().with_values("storage", db_url=f"sqlite:///{warned.db}")
    with ExitStack() as stack:
        console = Console(settings)
        stack.callback(console.close)
        url = stack.enter_context(serving(create_app(console)))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        job = next(j for j in console.jobs(MONTH) if j.district == WARNED[0])
        response = client.get(f"{JOBS}/{job.id}/timeline")
        assert response.status_code == 200, response.text
        entries = response.json()["entries"]
    day = (WARNED[1] - timedelta(days=1)).isoformat()
    assert {e["asOf"]: e["warnings"] for e in entries if e["warnings"]} == {day: [expected(warned)]}
    assert all("warnings" in e for e in entries)
