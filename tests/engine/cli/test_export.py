"""``recon export``: a month's final figures as CSV, the same as the API's final.csv."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from engine.app.queries import FINAL_COLUMNS
from engine.cli.core import main
from engine.domain.models import ALL_METRICS
from tests.engine.api.test_api import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-03"
DISTRICTS = ["1", "2", "F"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """March 2025 reconciled for three districts."""
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'recon.db'}"
    assert main(["run", "--month", MONTH, "--districts", ",".join(DISTRICTS), "--db", url]) == 0
    return url


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_writes_one_row_per_district_with_the_final_metrics(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "final.csv"
    assert main(["export", "--month", MONTH, "--out", str(out), "--db", db]) == 0
    said = capsys.readouterr().err
    assert f"Wrote 3 districts of {MONTH}" in said and "not final" not in said  # closed
    rows = read_csv(out.read_text(encoding="utf-8"))
    assert list(rows[0]) == [*FINAL_COLUMNS, *ALL_METRICS]
    assert main(["status", "--month", MONTH, "--json", "--db", db]) == 0
    status = {r["district"]: r for r in json.loads(capsys.readouterr().out)}
    assert [r["district"] for r in rows] == DISTRICTS
    for row in rows:
        want = status[row["district"]]
        assert (row["status"], row["reason"]) == (want["status"], want["reason"])
        assert row["final_as_of"] == want["final_as_of"]
        assert {m: float(row[m]) for m in ALL_METRICS} == want["final_metrics"]

    assert main(["export", "--month", MONTH, "--out", "-", "--db", db]) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")


def test_export_of_a_month_not_closed_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'open.db'}"
    assert (
        main(["run", "--month", MONTH, "--districts", "1", "--until", "2025-04-02", "--db", url])
        == 0
    )
    capsys.readouterr()
    assert main(["export", "--month", MONTH, "--out", str(tmp_path / "f.csv"), "--db", url]) == 0
    said = capsys.readouterr().err
    assert "month open: rows without a final as-of date are not final" in said, said


def test_export_refuses_a_month_without_jobs_and_an_unwritable_file(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--month", "2024-01", "--out", str(tmp_path / "x.csv"), "--db", db]) == 2
    assert "no jobs yet" in capsys.readouterr().err
    assert main(["export", "--month", MONTH, "--out", str(tmp_path), "--db", db]) == 2
    assert "cannot write the file" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_the_api_serves_the_same_csv_and_refuses_months_not_ended(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "final.csv"
    assert main(["export", "--month", MONTH, "--out", str(exported), "--db", db]) == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "api", "--port", str(port), "--db", db],
            cwd=ROOT,
            env={**env, "RECON_TODAY": "2025-04-20"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until_up(client, proc, log)
            served = client.get(f"/api/reconciliation/months/{MONTH}/final.csv")
            assert served.status_code == 200 and served.headers["content-type"].startswith(
                "text/csv"
            )
            assert served.text == exported.read_text(encoding="utf-8")
            assert client.get("/api/reconciliation/months/2024-01/final.csv").status_code == 404
            refused = client.post(
                "/api/reconciliation/jobs", json={"targetMonth": "2025-04", "districtIds": ["1"]}
            )
            assert refused.status_code == 400
            assert "first month that can be reconciled is 2025-03" in refused.json()["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
