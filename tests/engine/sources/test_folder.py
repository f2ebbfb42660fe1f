"""The folder source, against exports written by ``recon sim export``."""

from __future__ import annotations

import argparse
import json
import shutil
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import pytest

from engine import settings as settings_mod
from engine.cli import sim as sim_command
from engine.cli.core import Context
from engine.domain.models import JobStatus, Reason, Snapshot, month_end
from engine.errors import GapError, ParseError, SourceError
from engine.settings import Settings
from engine.sources.folder import FolderSource
from engine.sources.sim import (
    Simulator,
    SimulatorSource,
    export_dates,
    export_folder,
)
from tests.engine.sources.common import CLOSING, DISTRICTS, MONTH, recon_run, results, same


def run_export(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    sim_command.register(parser.add_subparsers())
    args = parser.parse_args(["sim", "export", *argv])
    settings = settings_mod.load(env={}, overrides={"source": {"seed": args.seed}})
    code: int = args.handler(args, Context(settings))
    return code


def test_folder_round_trip_through_the_export_command(sim: Simulator, tmp_path: Path) -> None:
    calendar = tmp_path / "calendar.json"
    calendar.write_text(json.dumps({MONTH: CLOSING.isoformat()}))
    out = tmp_path / "exports"
    argv = ["--month", MONTH, "--out", str(out), "--districts", "7,42,f", "--seed", "5"]
    assert run_export(tmp_path, *argv, "--calendar", str(calendar)) == 0
    dates = export_dates(sim, MONTH)
    assert dates[0] == month_end(MONTH) + timedelta(days=1)
    assert dates[-1] == CLOSING + timedelta(days=3)
    assert sorted(p.name for p in out.iterdir()) == [d.isoformat() for d in dates]

    folder = FolderSource(out, share_summary=True)
    memory = SimulatorSource(sim, share_summary=True)
    for day in dates:
        for district in DISTRICTS:
            same(folder.fetch(district, MONTH, day), memory.fetch(district, MONTH, day))
    # only the exported districts are listed (issue #18: a run of the folder works them all)
    assert folder.districts(MONTH, dates[0]) == ["7", "42", "F"]


def test_folder_source_missing_files(sim: Simulator, tmp_path: Path) -> None:
    day = date(2025, 4, 2)
    (tmp_path / day.isoformat()).mkdir()
    path = tmp_path / day.isoformat() / "clubperformance_42.csv"
    path.write_text(sim.club_performance_csv("42", MONTH, day), newline="")
    source = FolderSource(tmp_path, share_summary=False)

    snap = source.fetch("42", MONTH, day)
    assert "paid_clubs" not in snap.metrics and snap.metrics["clubs"] > 0
    assert source.districts(MONTH, day) == ["42"]
    with pytest.raises(SourceError) as info:
        source.fetch("7", MONTH, day)
    # Named relative to the folder: errors are served to users who need not see local paths.
    assert f"{day.isoformat()}/clubperformance_7.csv" in str(info.value)
    assert str(tmp_path) not in str(info.value)
    assert not info.value.transient and not isinstance(info.value, GapError)

    path.write_text("District,Club Number\r\n42,x\r\n")
    with pytest.raises(ParseError) as parse_info:
        source.fetch("42", MONTH, day)
    assert parse_info.value.source == f"{day.isoformat()}/clubperformance_42.csv"


def write_club(sim: Simulator, root: Path, day: date, name: str = "42", district: str = "") -> Path:
    """``sim``'s club export of ``district`` (default: ``name``) as ``clubperformance_<name>``."""
    folder = root / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"clubperformance_{name}.csv"
    path.write_text(sim.club_performance_csv(district or name, MONTH, day), newline="")
    return path


def test_a_missed_day_is_a_gap_and_a_month_without_exports_an_error(
    sim: Simulator, tmp_path: Path
) -> None:
    first, missed, third, absent = (date(2025, 4, d) for d in (1, 2, 3, 4))
    write_club(sim, tmp_path, first)
    write_club(sim, tmp_path, third)
    (tmp_path / missed.isoformat()).mkdir()  # a day's folder without the file; the 4th: none
    source = FolderSource(tmp_path, share_summary=True)
    for day in (missed, absent):
        with pytest.raises(GapError) as gap:
            source.fetch("42", MONTH, day)
        assert f"{day.isoformat()}/clubperformance_42.csv" in str(gap.value)
        assert not gap.value.transient and str(tmp_path) not in str(gap.value)
    assert source.fetch("42", MONTH, third).as_of == third - timedelta(days=1)
    assert source.districts(MONTH, missed) == source.districts(MONTH, absent) == ["42"]

    # April's collection dates are in May: the folder has none.
    for call in (lambda: source.fetch("42", "2025-04", date(2025, 5, 2)),
                 lambda: source.districts("2025-04", date(2025, 5, 1))):  # fmt: skip
        with pytest.raises(SourceError) as none:
            call()
        assert not isinstance(none.value, GapError) and not none.value.transient
        message = str(none.value)
        assert "no exports for 2025-04" in message and repr(tmp_path.name) in message
        assert str(tmp_path) not in message


def test_district_ids_in_file_names_are_read_like_any_other(sim: Simulator, tmp_path: Path) -> None:
    day = date(2025, 4, 2)
    write_club(sim, tmp_path, day, "07", "7")
    write_club(sim, tmp_path, day, "f", "F")
    write_club(sim, tmp_path, day, "backup", "42")  # not a district id: not an export
    source = FolderSource(tmp_path, share_summary=False)
    memory = SimulatorSource(sim, share_summary=False).fetch("7", MONTH, day).metrics
    assert source.districts(MONTH, day) == ["7", "F"]
    for asked in ("7", "07", "007"):
        snap = source.fetch(asked, MONTH, day)
        assert (snap.district, snap.source) == ("7", f"{day.isoformat()}/clubperformance_07.csv")
        assert snap.metrics["clubs"] == memory["clubs"]
    assert source.fetch("f", MONTH, day).district == "F"

    write_club(sim, tmp_path, day, "7")
    with pytest.raises(SourceError, match="two exports of one district") as twice:
        source.districts(MONTH, day)
    assert "2025-04-02/clubperformance_07.csv and 2025-04-02/clubperformance_7.csv" in str(
        twice.value
    )


def test_links_out_of_the_folder_are_refused(sim: Simulator, tmp_path: Path) -> None:
    root, day = tmp_path / "exports", date(2025, 4, 2)
    inside = write_club(sim, root, date(2025, 4, 1))
    outside = write_club(sim, tmp_path / "elsewhere", day)
    (root / day.isoformat()).mkdir()
    (root / day.isoformat() / "clubperformance_42.csv").symlink_to(outside)
    (root / day.isoformat() / "clubperformance_7.csv").symlink_to(inside)
    (root / "2025-04-03").symlink_to(outside.parent, target_is_directory=True)
    source = FolderSource(root, share_summary=False)

    assert source.fetch("7", MONTH, day).metrics["clubs"] > 0  # a link inside: followed
    for name in ("2025-04-02/clubperformance_42.csv", "2025-04-03/clubperformance_42.csv"):
        with pytest.raises(SourceError) as refused:
            source.fetch("42", MONTH, date.fromisoformat(name[:10]))
        assert f"refused {name}: it links to a file outside" in str(refused.value)
        assert str(tmp_path) not in str(refused.value) and not refused.value.transient


def test_an_export_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    day = date(2025, 4, 2)
    (tmp_path / day.isoformat()).mkdir()
    with (tmp_path / day.isoformat() / "clubperformance_42.csv").open("wb") as file:
        file.truncate(200_000_000)  # 200 MB that take no disk space (a sparse file)
    source = FolderSource(tmp_path, share_summary=False)  # the default cap: 20 MB
    tracemalloc.start()
    try:
        with pytest.raises(ParseError) as info:
            source.fetch("42", MONTH, day)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000
    assert info.value.source == "2025-04-02/clubperformance_42.csv"
    assert "export of 200,000,000 bytes is over the cap of 20,000,000 bytes" in str(info.value)
    assert "(setting source.max_export_bytes)" in str(info.value)


# --- whole runs (`recon run --source FOLDER`) on folders with missing days and files ---


@pytest.fixture(scope="module")
def exported(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sim``'s exports of :data:`DISTRICTS` for the month, every day of its closing period."""
    out = tmp_path_factory.mktemp("exports")
    for _ in export_folder(sim, MONTH, out, districts=DISTRICTS):
        pass
    return out


@pytest.fixture(scope="module")
def complete(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Snapshot]:
    """The month-end snapshots of a run on the whole folder."""
    db = tmp_path_factory.mktemp("complete") / "recon.db"
    assert recon_run(exported, db, MONTH, "--districts", ",".join(DISTRICTS)) == 0
    return results(db, MONTH)[1]


def test_a_folder_with_a_missing_middle_day_reconciles(
    exported: Path, complete: dict[str, Snapshot], tmp_path: Path
) -> None:
    folder = shutil.copytree(exported, tmp_path / "exports")
    shutil.rmtree(folder / (CLOSING - timedelta(days=2)).isoformat())
    assert recon_run(folder, tmp_path / "recon.db", MONTH, "--districts", ",".join(DISTRICTS)) == 0
    jobs, finals = results(tmp_path / "recon.db", MONTH)
    assert {(j.status, j.reason) for j in jobs.values()} == {
        (JobStatus.COMPLETED, Reason.CLOSING_ENDED)
    }
    assert {d: (s.as_of, dict(s.metrics)) for d, s in finals.items()} == {
        d: (s.as_of, dict(s.metrics)) for d, s in complete.items()
    }
    assert all(j.final_as_of == CLOSING - timedelta(days=1) for j in jobs.values())


def test_a_folder_without_summaries_reconciles_the_club_figures(
    exported: Path, complete: dict[str, Snapshot], tmp_path: Path
) -> None:
    folder = shutil.copytree(exported, tmp_path / "exports")
    for summary in folder.glob("*/districtsummary.csv"):
        summary.unlink()
    assert recon_run(folder, tmp_path / "recon.db", MONTH) == 0  # districts from the club files
    jobs, finals = results(tmp_path / "recon.db", MONTH)
    assert sorted(jobs) == sorted(DISTRICTS)
    assert {j.reason for j in jobs.values()} == {Reason.CLOSING_ENDED}
    summary_only = {"paid_clubs", "total_payments", "payment_base"}
    for district, snap in complete.items():
        club_level = {m: v for m, v in snap.metrics.items() if m not in summary_only}
        assert summary_only <= snap.metrics.keys()
        assert (finals[district].as_of, dict(finals[district].metrics)) == (snap.as_of, club_level)


def test_trailing_missed_days_end_at_the_window_with_the_last_snapshot(
    exported: Path, tmp_path: Path
) -> None:
    folder = shutil.copytree(exported, tmp_path / "exports")
    kept = [month_end(MONTH) + timedelta(days=d) for d in (1, 2, 3)]
    for day in folder.iterdir():
        if date.fromisoformat(day.name) not in kept:
            shutil.rmtree(day)
    db = tmp_path / "recon.db"
    assert recon_run(folder, db, MONTH, "--districts", ",".join(DISTRICTS), "--mode", "naive") == 0
    jobs, finals = results(db, MONTH)
    for district, job in jobs.items():
        assert (job.status, job.reason, job.checks) == (
            JobStatus.COMPLETED,
            Reason.WINDOW_REACHED,
            3,
        )
        assert job.final_as_of == finals[district].as_of == kept[-1] - timedelta(days=1)
    recon = Settings().recon  # the window, every extension taken: the month still published
    window = recon.max_reconciliation_days + recon.max_extension_days
    assert {j.last_check_date for j in jobs.values()} == {month_end(MONTH) + timedelta(window)}


def test_a_month_the_folder_has_no_exports_for_is_refused(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert recon_run(exported, tmp_path / "recon.db", "2025-05") == 1
    message = " ".join(capsys.readouterr().err.split())
    assert f"no exports for 2025-05 in source folder {exported.name!r}" in message
    assert str(exported.parent) not in message
    assert results(tmp_path / "recon.db", "2025-05") == ({}, {})
