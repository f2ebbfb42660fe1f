"""``recon`` refuses bad input with one line and exit 2, reports what it clamps, and
stops quietly when its reader goes away (issue #18, defects 7 and 8)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.core import main
from engine.settings import clamp

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-03"


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'recon.db'}"


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The error ``recon`` printed: one line, no traceback, naming ``words``."""
    printed = capsys.readouterr().err
    assert "Traceback" not in printed
    lines = [line for line in printed.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), printed
    for word in words:
        assert word in lines[0]
    return lines[0]


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> str:
    """Run ``argv``, which argparse refuses: exit 2 and a message naming ``words``."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    printed = capsys.readouterr().err
    assert "Traceback" not in printed
    last = printed.strip().splitlines()[-1]
    for word in words:
        assert word in last
    return last


def batch_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["batch", "list", "--json", "--db", db_url(tmp_path)]) == 0
    batches: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return batches


# --- defect 7: one line and exit 2 instead of a traceback ------------------------------


@pytest.mark.parametrize("url", ["not a url", ""])
def test_a_database_url_that_is_not_one_is_refused(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--month", MONTH, "--db", url]) == 2
    one_line_error(capsys, "not a database URL")


def test_a_settings_file_that_is_a_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["status", "--month", MONTH, "--db", db_url(tmp_path), "--settings", str(tmp_path)]
    assert main(argv) == 2
    one_line_error(capsys, "settings file", "folder")


def test_a_binary_settings_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "settings.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    argv = ["status", "--month", MONTH, "--db", db_url(tmp_path), "--settings", str(binary)]
    assert main(argv) == 2
    one_line_error(capsys, "settings file", "not a text")


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:abc"])
def test_an_http_source_that_is_not_a_url_is_refused(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--month", MONTH, "--districts", "1", "--db", db_url(tmp_path)]
    assert main([*argv, "--source", url]) == 2
    one_line_error(capsys, "source=", "not a valid URL")


def test_status_json_into_a_closed_pipe_exits_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``recon status --json | head -c 10``: the reader is gone before we write (it
    closes its end at once; a Python process takes far longer to start)."""
    assert main(["run", "--month", MONTH, "--districts", "1,2,3", "--db", db_url(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["status", "--month", MONTH, "--json", "--db", db_url(tmp_path)]) == 0
    assert len(capsys.readouterr().out) > 10  # there is something to write
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "status", "--month", MONTH, "--json",
         "--db", db_url(tmp_path)],
        cwd=ROOT, stdout=write, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    os.close(read)
    _, stderr = proc.communicate(timeout=60)
    assert stderr.decode() == ""
    assert proc.returncode == 128 + signal.SIGPIPE


# --- defect 4: months and district ids are ASCII, matched in full ----------------------


@pytest.mark.parametrize("month", ["２０２５-06", "٢٠٢٥-٠٦", f"{MONTH}\n", f"{MONTH} "])
def test_a_month_in_other_digits_or_with_a_newline_is_refused(
    month: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--month $'2025-03\\n'`` was stored as a month of its own; no batch is started."""
    for command in (
        ["run", "--districts", "1"],
        ["batch", "start", "--districts", "1"],
        ["status"],
    ):
        assert main([*command, "--month", month, "--db", db_url(tmp_path)]) == 2
        one_line_error(capsys, "month=", "expected YYYY-MM")
    assert batch_list(tmp_path, capsys) == []


@pytest.mark.parametrize("district", ["４２", "٤٢", "4-2"])
def test_a_district_in_other_digits_is_refused(
    district: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--month", MONTH, "--districts", f"1,{district}", "--db", db_url(tmp_path)]
    assert main(argv) == 2
    one_line_error(capsys, "district=", "letters or digits")


# --- defect 8: smaller ones -------------------------------------------------------------


@pytest.mark.parametrize("districts", [",,,", "", " , "])
def test_an_empty_district_list_is_refused(
    districts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--month", MONTH, "--districts", districts, "--db", db_url(tmp_path)]
    usage_error(capsys, argv, "--districts", "district ids")
    argv = ["batch", "start", "--month", MONTH, "--districts", districts]
    usage_error(capsys, [*argv, "--db", db_url(tmp_path)], "--districts")
    argv = ["sim", "export", "--month", MONTH, "--out", str(tmp_path / "out")]
    usage_error(capsys, [*argv, "--districts", districts], "--districts")
    assert not (tmp_path / "recon.db").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("given", "used"), [("999", 20), ("0", 1), ("-5", 1)])
def test_run_reports_a_clamped_concurrency_and_uses_it(
    given: str, used: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--month", MONTH, "--districts", "1", "--db", db_url(tmp_path)]
    assert main([*argv, "--concurrency", given]) == 0
    assert f"note: --concurrency {given} clamped to {used} (range 1-20)" in capsys.readouterr().err
    [batch] = batch_list(tmp_path, capsys)
    assert batch["config"]["max_concurrent_jobs"] == used  # type: ignore[index]
    assert batch["counts"] == {"succeeded": 1}


def test_batch_start_reports_clamped_options_by_their_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["batch", "start", "--month", MONTH, "--districts", "1", "--db", db_url(tmp_path)]
    assert main([*argv, "--retries", "50", "--timeout-ms", "5", "--concurrency", "99"]) == 0
    printed = capsys.readouterr().err
    assert "note: --retries 50 clamped to 10 (range 0-10)" in printed
    assert "note: --timeout-ms 5 clamped to 1000 (range 1000-1800000)" in printed
    assert "note: --concurrency 99 clamped to 20 (range 1-20)" in printed
    [batch] = batch_list(tmp_path, capsys)
    config = batch["config"]
    assert (config["retry_attempts"], config["timeout_ms"]) == (10, 1000)  # type: ignore[index]


def test_a_clamp_note_shows_whole_numbers_as_integers() -> None:
    used, note = clamp("source", "latency_ms", 70000.0, label="--latency-ms")
    assert used == 60000
    assert note == "--latency-ms 70000 clamped to 60000 (range 0-60000)"
    assert clamp("source", "failure_rate", 1.5, label="--failure-rate")[1] == (
        "--failure-rate 1.5 clamped to 1 (range 0-1)"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_latency_is_refused(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--month", MONTH, "--districts", "1", "--db", db_url(tmp_path)]
    usage_error(capsys, [*argv, f"--latency-ms={value}"], "--latency-ms", "finite")
    usage_error(capsys, ["sim", "serve", f"--latency-ms={value}"], "--latency-ms", "finite")
    usage_error(capsys, ["sim", "serve", f"--failure-rate={value}"], "--failure-rate")


def test_non_finite_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "settings.toml"
    toml.write_text("[source]\nlatency_ms = nan\n")
    argv = ["status", "--month", MONTH, "--db", db_url(tmp_path), "--settings", str(toml)]
    assert main(argv) == 2
    one_line_error(capsys, "source.latency_ms", "finite")


@pytest.mark.parametrize("option", [["--calendar", "cal.json"], ["--latency-ms", "5"]])
@pytest.mark.parametrize("source", ["folder", "http://127.0.0.1:9"])
def test_simulator_options_with_another_source_are_refused(
    option: list[str], source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = str(tmp_path) if source == "folder" else source
    argv = ["run", "--month", MONTH, "--districts", "1", "--db", db_url(tmp_path)]
    assert main([*argv, "--source", where, *option]) == 2
    one_line_error(capsys, option[0], "simulator only")
    assert not (tmp_path / "recon.db").exists()


def test_a_sqlite_file_in_a_missing_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "such"
    assert main(["status", "--month", MONTH, "--db", f"sqlite:///{missing / 'r.db'}"]) == 2
    one_line_error(capsys, "does not exist", str(missing))
    assert not (tmp_path / "no").exists()


def test_the_default_database_keeps_working_where_data_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default ``data/recon.db`` (its folder ships with the project) is still made."""
    monkeypatch.chdir(tmp_path)
    for name in ("RECON_DB_URL", "RECON_STORAGE_DB_URL", "RECON_SETTINGS"):
        monkeypatch.delenv(name, raising=False)
    assert main(["run", "--month", MONTH, "--districts", "1"]) == 0
    assert (tmp_path / "data" / "recon.db").is_file()
    capsys.readouterr()
    assert main(["status", "--month", MONTH, "--json"]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["completed"]


def test_sim_export_of_some_districts_writes_only_their_summary_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exports"
    assert main(["sim", "export", "--month", MONTH, "--out", str(out), "--districts", "1,2"]) == 0
    summaries = sorted(out.glob("*/districtsummary.csv"))
    assert summaries
    for summary in summaries:
        rows = list(csv.reader(summary.read_text(encoding="utf-8").splitlines()))
        assert [r[1] for r in rows[1:-1]] == ["01", "02"]  # DISTRICT, zero-padded
        assert rows[-1][0].startswith("Month of")
    # a run on that folder, every district it lists: both complete, none fails
    assert main(["run", "--month", MONTH, "--source", str(out), "--db", db_url(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["status", "--month", MONTH, "--json", "--db", db_url(tmp_path)]) == 0
    rows_ = json.loads(capsys.readouterr().out)
    assert [(r["district"], r["status"]) for r in rows_] == [("1", "completed"), ("2", "completed")]


def test_a_folder_without_exports_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "exports"
    empty.mkdir()
    # a source problem (exit 1), named with the folder and what it should hold
    assert main(["run", "--month", MONTH, "--source", str(empty), "--db", db_url(tmp_path)]) == 1
    line = one_line_error(capsys, f"no exports for {MONTH}", "'exports'", "sub-folders")
    assert "districts=None" not in line
