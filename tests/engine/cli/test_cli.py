"""``recon`` end to end: the simulator in process, over real HTTP from
``recon sim serve``, and from a folder written by ``recon sim export`` all give
the same final month-end figures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.cli.core import main
from engine.domain.models import ALL_METRICS
from engine.settings import Settings
from engine.store.storage import Storage
from tests.engine.api.test_api import free_port

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-03"
DISTRICTS = "1,2,3,4,5,6,7,8,F,U"
FIELDS = ["district", "status", "phase", "reason", "final_as_of", "checks", "significant_changes",
          "error", "final_metrics"]  # fmt: skip


def finals(db: Path) -> dict[str, tuple[object, ...]]:
    storage = Storage(Settings().with_values("storage", db_url=f"sqlite:///{db}").storage)
    try:
        snaps = storage.month_end_snapshots(MONTH)
        return {d: (s.as_of, dict(s.metrics)) for d, s in snaps.items()}
    finally:
        storage.close()


def run(db: Path, *extra: str) -> int:
    return main(["run", "--month", MONTH, "--districts", DISTRICTS, "--db", f"sqlite:///{db}",
                 *extra])  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, ...]]:
    db = tmp_path_factory.mktemp("ref") / "sim.db"
    assert run(db) == 0
    return finals(db)


def test_run_then_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "sim.db"
    assert run(db) == 0
    printed = capsys.readouterr().out
    assert f"Month-end {MONTH}: summary" in printed and "completed: closing-ended" in printed
    assert "Batch summary" not in printed  # one summary: the month's
    assert main(["status", "--month", MONTH, "--json", "--db", f"sqlite:///{db}"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [list(r) for r in rows] == [FIELDS] * 10
    assert {r["status"] for r in rows} == {"completed"}
    assert {r["reason"] for r in rows} == {"closing-ended"}
    assert all(r["checks"] > 1 and r["final_as_of"] for r in rows)
    assert {r["error"] for r in rows} == {None}
    assert all(set(r["final_metrics"]) == set(ALL_METRICS) for r in rows)


def test_http_source_from_recon_sim_serve_gives_identical_finals(
    tmp_path: Path, reference: dict[str, tuple[object, ...]]
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sim", "serve", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/export.aspx", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert run(tmp_path / "http.db", "--source", url) == 0
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert finals(tmp_path / "http.db") == reference


def test_folder_from_recon_sim_export_gives_identical_finals(
    tmp_path: Path, reference: dict[str, tuple[object, ...]]
) -> None:
    out = tmp_path / "exports"
    assert (
        main(["sim", "export", "--month", MONTH, "--out", str(out), "--districts", DISTRICTS]) == 0
    )
    assert run(tmp_path / "folder.db", "--source", str(out)) == 0
    assert finals(tmp_path / "folder.db") == reference


def test_calendar_file_sets_the_closing_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calendar = tmp_path / "calendar.json"
    calendar.write_text(json.dumps({MONTH: "2025-04-05"}))
    db = f"sqlite:///{tmp_path / 'cal.db'}"
    assert main(["run", "--month", MONTH, "--districts", "1,2", "--calendar", str(calendar),
                 "--db", db]) == 0  # fmt: skip
    capsys.readouterr()
    main(["status", "--month", MONTH, "--json", "--db", db])
    rows = json.loads(capsys.readouterr().out)
    # closing ends on 5 April: the last target-month data is as of the day before
    assert {r["final_as_of"] for r in rows} == {"2025-04-04"}


def test_settings_file_then_environment_then_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    file_db, env_db, opt_db = (tmp_path / f"{n}.db" for n in ("file", "env", "opt"))
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[storage]\ndb_url = "sqlite:///{file_db}"\n')
    monkeypatch.setenv("RECON_SETTINGS", str(settings))
    assert main(["run", "--month", MONTH, "--districts", "1"]) == 0
    monkeypatch.setenv("RECON_DB_URL", f"sqlite:///{env_db}")
    assert main(["run", "--month", MONTH, "--districts", "2"]) == 0
    assert main(["run", "--month", MONTH, "--districts", "3", "--db", f"sqlite:///{opt_db}"]) == 0
    assert [list(finals(db)) for db in (file_db, env_db, opt_db)] == [["1"], ["2"], ["3"]]
