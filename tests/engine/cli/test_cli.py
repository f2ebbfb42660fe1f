"""``recon`` end to end: the simulator in process, over real HTTP from
``recon sim serve``, and from a folder written by ``recon sim export`` all give
the same final month-end figures."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.app.console import open_storage
from engine.cli.core import main
from engine.domain.models import ALL_METRICS
from engine.settings import Settings
from tests.engine.api.test_api import free_port

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-03"
DISTRICTS = "1,2,3,4,5,6,7,8,F,U"
FIELDS = ["district", "status", "phase", "reason", "final_as_of", "checks", "significant_changes",
          "error", "final_metrics", "warnings"]  # fmt: skip


def finals(db: Path) -> dict[str, tuple[object, ...]]:
    storage = open_storage(Settings().with_values("storage", db_url=f"sqlite:///{db}").storage)
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


def test_a_table_written_to_a_pipe_is_not_cut_to_80_columns(tmp_path: Path) -> None:
    db = tmp_path / "sim.db"
    assert run(db, "--districts", "1,2") == 0
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    command = [sys.executable, "-m", "engine.cli", "status", "--month", MONTH]
    shown = subprocess.run(
        [*command, "--db", f"sqlite:///{db}"], capture_output=True, text=True, env=env, check=True
    ).stdout
    rows = [line for line in shown.splitlines() if line.startswith("│ 1 ")]
    assert rows and "…" not in shown, shown
    assert re.search(r"│ completed │ .* │ closing-ended │ \d{4}-\d{2}-\d{2} ", rows[0]), rows


def test_run_then_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "sim.db"
    assert run(db) == 0
    printed = capsys.readouterr().out
    assert f"Month-end {MONTH}: summary" in printed and "completed: closing-ended" in printed
    assert "Batch summary" not in printed  # one summary: the month's
    assert re.search(r"month closed · \d+ checks in [\d.]+ s", printed), printed
    assert main(["status", "--month", MONTH, "--json", "--db", f"sqlite:///{db}"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [list(r) for r in rows] == [FIELDS] * 10
    assert {r["status"] for r in rows} == {"completed"}
    assert {r["reason"] for r in rows} == {"closing-ended"}
    assert all(r["checks"] > 1 and r["final_as_of"] for r in rows)
    assert {r["error"] for r in rows} == {None}
    assert all(set(r["final_metrics"]) == set(ALL_METRICS) for r in rows)
    assert all(r["warnings"] == [] for r in rows)  # the simulator's codes are all known


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


def calendar_file(folder: Path, month: str, closing: str) -> Path:
    """A calendar file giving ``month`` its last closing collection date."""
    path = folder / "calendar.json"
    path.write_text(json.dumps({month: closing}))
    return path


def test_calendar_file_sets_the_closing_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calendar = calendar_file(tmp_path, MONTH, "2025-04-05")
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


# --- today: what `recon run` may replay -------------------------------------------------

JUNE = "2025-06"


def flat(text: str) -> str:
    """Rich wraps long lines at 80 columns: compare words, not lines."""
    return " ".join(text.split())


def status_json(db: str, month: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["status", "--month", month, "--json", "--db", db]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_a_month_that_has_not_ended_is_refused_naming_the_one_that_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECON_TODAY", "2025-07-10")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", "--month", "2025-07", "--db", db]) == 2
    assert "the first month that can be reconciled is 2025-06" in flat(capsys.readouterr().err)
    assert main(["run", "--month", JUNE, "--until", "2025-07-11", "--db", db]) == 2
    assert "is after today (2025-07-10)" in flat(capsys.readouterr().err)
    with pytest.raises(SystemExit) as usage:
        main(["run", "--month", JUNE, "--until", "10 July", "--db", db])
    assert usage.value.code == 2
    assert main(["status", "--month", "2025-07", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out) == []  # nothing was started


def test_until_before_the_close_leaves_districts_open_and_a_later_run_closes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calendar = calendar_file(tmp_path, JUNE, "2025-07-14")
    db = f"sqlite:///{tmp_path / 'until.db'}"
    base = ["run", "--month", JUNE, "--districts", "1,2,F", "--calendar", str(calendar)]
    assert main([*base, "--until", "2025-07-03", "--db", db]) == 0
    printed = flat(capsys.readouterr().out)
    assert "│ active │ 3 │" in printed and "month open" in printed
    assert "3 districts still open: their closing period had not ended by 2025-07-03" in printed
    assert f"run `recon run --month {JUNE}` with a later --until" in printed
    rows = status_json(db, JUNE, capsys)
    assert {(r["status"], r["final_as_of"], r["final_metrics"]) for r in rows} == {
        ("active", None, None)
    }

    assert main([*base, "--until", "2025-07-20", "--db", db]) == 0
    assert "still open" not in capsys.readouterr().out
    rows = status_json(db, JUNE, capsys)
    assert {r["status"] for r in rows} == {"completed"}
    straight = f"sqlite:///{tmp_path / 'straight.db'}"
    assert main([*base, "--until", "2025-07-20", "--db", straight]) == 0
    assert status_json(straight, JUNE, capsys) == rows  # the stop on 3 July changed nothing
    assert {r["final_as_of"] for r in rows} == {"2025-07-13"}


def test_recon_today_moves_the_clock_of_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECON_TODAY", "2025-07-05")
    db = f"sqlite:///{tmp_path / 'today.db'}"
    assert main(["run", "--month", JUNE, "--districts", "1,2", "--db", db]) == 0
    printed = flat(capsys.readouterr().out)
    assert "not ended by 2025-07-05" in printed
    assert f"run `recon run --month {JUNE}` again later" in printed
    storage = open_storage(Settings().with_values("storage", db_url=db).storage)
    try:
        assert {j.last_check_date for j in storage.jobs(month=JUNE)} == {date(2025, 7, 5)}
    finally:
        storage.close()


def broken_folder(root: Path, days: list[str], districts: list[str]) -> Path:
    """A folder source whose exports are not exports: every check fails for good."""
    for day in days:
        (root / day).mkdir(parents=True)
        for d in districts:
            (root / day / f"clubperformance_{d}.csv").write_text("not,an,export\n1,2,3\n")
    return root


FAILING = [str(n) for n in range(1, 13)]


def run_failing(db: str, month: str, source: Path, capsys: pytest.CaptureFixture[str]) -> str:
    args = ["run", "--month", month, "--districts", ",".join(FAILING), "--source", str(source)]
    assert main([*args, "--concurrency", "6", "--db", db]) == 1
    return flat(capsys.readouterr().out)


def assert_all_failed(printed: str, month: str) -> None:
    assert f"│ failed │ {len(FAILING)} │" in printed, printed
    assert "│ active │" not in printed and "│ pending │" not in printed, printed
    districts = ", ".join(FAILING)
    reason = "ParseError: …, line 1: unknown export"  # the file left out: one line for all
    assert f"failed: {len(FAILING)} districts ({districts}): {reason}" in printed
    assert f"Month-end {month}: summary" in printed
    assert "e.g. district 1: ParseError:" in printed and "clubperformance_1.csv" in printed


def test_summary_counts_every_failure_and_prints_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECON_BATCH_RETRY_ATTEMPTS", "0")
    source = broken_folder(tmp_path / "exports", ["2025-04-01"], FAILING)
    db = f"sqlite:///{tmp_path / 'failing.db'}"
    assert_all_failed(run_failing(db, "2025-03", source, capsys), "2025-03")
    rows = status_json(db, "2025-03", capsys)
    assert {r["status"] for r in rows} == {"failed"}
    assert all("unknown export" in r["error"] for r in rows)


def test_a_second_run_for_another_month_prints_no_stale_active_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECON_BATCH_RETRY_ATTEMPTS", "0")
    source = broken_folder(tmp_path / "exports", ["2025-04-01", "2025-05-01"], FAILING)
    db = f"sqlite:///{tmp_path / 'failing.db'}"
    assert_all_failed(run_failing(db, "2025-03", source, capsys), "2025-03")
    assert_all_failed(run_failing(db, "2025-04", source, capsys), "2025-04")
    assert {r["status"] for r in status_json(db, "2025-04", capsys)} == {"failed"}
