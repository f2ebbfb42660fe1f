"""The real dashboard exports in ``shared/real-exports/`` (see its SOURCES.md) parse,
with the data month of the month they were requested as and the figures of the file.

The files are read where they are, never copied into the repository: the
repository is checked out beside ``shared/`` (``/work/main`` and ``/work/shared``,
likewise in CI), and a worktree sits further down beside it, so the folder is
looked for beside every parent of this file. A missing folder fails the tests.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from engine.domain.models import JobStatus, Reason
from engine.sources.parse import (
    Export,
    Report,
    build_snapshot,
    club_metrics,
    decode_export,
    parse_export,
    summary_districts,
    summary_metrics,
)
from engine.sources.sim import Simulator
from tests.engine.sources.common import recon_run, results

SHUBHWIP = "shubhwip__toastmasters-program-quality-leaderboard/testdata"
TM_DCP = "adrianwongstudio__tm-dcp/tests/fixtures"
D21_DCP = "adrianwongstudio__d21-dcp/probes"
ARCHIVE_AS_OF = date(2025, 9, 13)  # the download date, not a closing-period date

# path -> (report, month it was requested as, as-of date in the footer, rows)
FILES = {
    f"{SHUBHWIP}/clubperformance/(2022-2023)/06.csv": ("club", "2023-06", ARCHIVE_AS_OF, 175),
    f"{SHUBHWIP}/clubperformance/(2023-2024)/06.csv": ("club", "2024-06", ARCHIVE_AS_OF, 179),
    f"{SHUBHWIP}/clubperformance/(2024-2025)/06.csv": ("club", "2025-06", ARCHIVE_AS_OF, 186),
    f"{SHUBHWIP}/districtperformance/(2022-2023)/06.csv": ("perf", "2023-06", ARCHIVE_AS_OF, 175),
    f"{SHUBHWIP}/districtperformance/(2023-2024)/06.csv": ("perf", "2024-06", ARCHIVE_AS_OF, 179),
    f"{SHUBHWIP}/districtperformance/(2024-2025)/06.csv": ("perf", "2025-06", ARCHIVE_AS_OF, 186),
    f"{TM_DCP}/cp_closed.csv": ("club", "2024-06", date(2026, 9, 22), 109),
    f"{TM_DCP}/cp_open.csv": ("club", "2026-09", date(2026, 9, 22), 184),
    f"{D21_DCP}/m6.csv": ("club", "2024-06", date(2026, 8, 20), 109),
    f"{D21_DCP}/dcp_test.csv": ("club", "2026-08", date(2026, 8, 20), 181),
}
CLUB_FILES = [path for path, (kind, *_) in FILES.items() if kind == "club"]
PERF_FILES = [path for path, (kind, *_) in FILES.items() if kind == "perf"]


def _find_real_exports() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        found = parent / "shared" / "real-exports"
        if found.is_dir():
            return found
    return None


@pytest.fixture(scope="module")
def real() -> Path:
    found = _find_real_exports()
    if found is None:
        pytest.fail(
            "no shared/real-exports/ beside the repository or any parent folder of "
            f"{Path(__file__).resolve()}: check the shared folder out beside the repository"
        )
    return found


def _parse(real: Path, path: str, **options: str) -> Export:
    return parse_export(decode_export((real / path).read_bytes()), path, **options)


def _table(real: Path, path: str) -> list[dict[str, str]]:
    """The file's data rows as the csv module reads them (the footer left out)."""
    text = (real / path).read_text(encoding="ascii")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[-1][next(iter(rows[-1]))].startswith("Month of")
    return rows[:-1]


def test_every_real_file_is_listed(real: Path) -> None:
    assert {str(p.relative_to(real)) for p in real.rglob("*.csv")} == set(FILES)


@pytest.mark.parametrize("path", list(FILES))
def test_each_real_file_has_the_data_month_it_was_requested_as(real: Path, path: str) -> None:
    kind, month, as_of, count = FILES[path]
    export = _parse(real, path, requested=month)
    report = Report.CLUB_PERFORMANCE if kind == "club" else Report.DISTRICT_PERFORMANCE
    assert (export.report, export.data_month, export.as_of) == (report, month, as_of)
    assert len(export.rows) == count == len(_table(real, path))
    assert export.warnings == ()
    # What a source's check asks: the rows of the requested month (all of them here).
    assert _parse(real, path, rows_for=month) == export


def test_an_archive_download_is_the_requested_year_end_not_the_download_year(real: Path) -> None:
    path = f"{SHUBHWIP}/clubperformance/(2022-2023)/06.csv"  # Month of Jun, As of 09/13/2025
    assert _parse(real, path, requested="2023-06").data_month == "2023-06"
    snapshot = build_snapshot("91", _parse(real, path, rows_for="2023-06"), None)
    assert (snapshot.data_month, snapshot.as_of) == ("2023-06", ARCHIVE_AS_OF)
    assert snapshot.metrics["clubs"] == 175
    # Nothing requested: the year closest to the as-of date, as before.
    assert _parse(real, path).data_month == "2025-06"


def test_a_footer_naming_another_month_keeps_the_as_of_rule(real: Path) -> None:
    path = f"{TM_DCP}/cp_open.csv"  # Month of Sep, As of 09/22/2026
    later = _parse(real, path, rows_for="2026-08")  # August requested, September published
    assert (later.data_month, later.rows) == ("2026-09", ())
    assert _parse(real, path, requested="2025-09").data_month == "2025-09"


@pytest.mark.parametrize("path", CLUB_FILES)
def test_club_figures_match_the_file(real: Path, path: str) -> None:
    table = _table(real, path)
    level = Counter(row["Club Distinguished Status"] for row in table)
    status = Counter(row["Club Status"] for row in table)
    membership = sum(int(row["Active Members"]) for row in table)
    base = sum(int(row["Mem. Base"]) for row in table)
    expected = {
        "membership": membership,
        "membership_base": base,
        "net_growth": membership - base,
        "new_members": sum(int(row["New Members"]) for row in table),
        "clubs": len(table),
        "active_clubs": status["Active"],
        "suspended_clubs": status["Suspended"],
        "low_clubs": status["Low"],
        "ineligible_clubs": status["Ineligible"],
        "distinguished_clubs": level["D"],
        "select_distinguished_clubs": level["S"],
        "presidents_distinguished_clubs": level["P"],
        "smedley_distinguished_clubs": level["M"],
        "total_distinguished_clubs": level["D"] + level["S"] + level["P"] + level["M"],
        "dcp_goals": sum(int(row["Goals Met"]) for row in table),
    }
    assert club_metrics(_parse(real, path, requested=FILES[path][1])) == expected
    assert sum(level.values()) == len(table) and set(level) <= {"", "D", "S", "P", "M"}


def test_both_club_layouts_are_read_with_their_own_headings(real: Path) -> None:
    old = _parse(real, f"{TM_DCP}/cp_closed.csv")
    new = _parse(real, f"{TM_DCP}/cp_open.csv")
    headers = [
        next(csv.reader(io.StringIO((real / e.source).read_text(), newline=""))) for e in (old, new)
    ]
    assert (len(headers[0]), len(headers[1])) == (23, 25)
    assert "Level 2s" in headers[0] and "Level 2s or EOM" in headers[1]
    assert old.rows[0].text["Club Number"] == "00000038"  # leading zeros kept
    assert (new.rows[0].text["Division"], new.rows[0].text["Area"]) == ("0D", "0A")


@pytest.mark.parametrize("path", PERF_FILES)
def test_district_performance_figures_match_the_file(real: Path, path: str) -> None:
    table = _table(real, path)
    export = _parse(real, path, requested=FILES[path][1])
    assert [row.text["District"] for row in export.rows] == ["91"] * len(table)
    for column in ("New", "Late Ren.", "Oct. Ren.", "Apr. Ren.", "Total Ren.", "Total to Date"):
        assert sum(row.numbers[column] for row in export.rows) == sum(
            int(row[column]) for row in table
        )
    assert [row.text["Distinguished Status"] for row in export.rows] == [
        row["Distinguished Status"] for row in table
    ]


def test_a_suspend_date_with_a_leading_space_is_read(real: Path) -> None:
    path = f"{SHUBHWIP}/districtperformance/(2024-2025)/06.csv"
    raw = [row["Charter Date/Suspend Date"] for row in _table(real, path)]
    assert " Susp 03/31/25" in raw
    dates = [row.text["Charter Date/Suspend Date"] for row in _parse(real, path).rows]
    assert dates.count("Susp 03/31/25") == raw.count(" Susp 03/31/25")


# The real district summary of 2025-26, header as quoted in SOURCES.md (no real file of it
# exists): 25 columns in another order than before, REGION and DISTRICT zero-padded.
SUMMARY_2025_26 = (
    '"REGION","DISTRICT","DSP","Training","Market Analysis","Communication Plan",'
    '"Region Advisor Visit","New Payments","April Payments","October Payments","Late Payments",'
    '"Charter Payments","Total YTD Payments","Payment Base","% Payment Growth","Paid Club Base",'
    '"Paid Clubs","% Club Growth","Active Clubs","Distinguished Clubs",'
    '"Select Distinguished Clubs","Presidents Distinguished Clubs","Smedley Distinguished Clubs",'
    '"Total Distinguished Clubs","% Distinguished Clubs"'
)
SUMMARY_ROWS = (  # made up, in that layout
    ("01", "02", "Y", "Y", "Y", "Y", "N", "310", "1,020", "1,150", "12", "40", "2,532",
     "2,480", "2.10%", "118", "121", "2.54%", "119", "20", "14", "9", "2", "45", "37.19%"),
    ("09", "91", "Y", "N", "Y", "Y", "Y", "405", "1,610", "1,702", "3", "22", "3,742",
     "3,690", "1.41%", "186", "179", "-3.76%", "175", "31", "22", "46", "0", "99", "55.31%"),
    ("14", "F", "N", "N", "N", "Y", "N", "90", "301", "322", "0", "0", "713",
     "725", "-1.66%", "30", "31", "3.33%", "31", "4", "2", "1", "0", "7", "22.58%"),
)  # fmt: skip


def summary_2025_26(*rows: tuple[str, ...]) -> str:
    lines = [SUMMARY_2025_26, *(",".join(f'"{cell}"' for cell in row) for row in rows)]
    return "\r\n".join([*lines, "Month of Jun, As of 07/01/2026"]) + "\r\n"


def test_the_header_quoted_is_the_one_in_sources_md(real: Path) -> None:
    assert f"`{SUMMARY_2025_26}`" in (real / "SOURCES.md").read_text()


def test_the_district_summary_of_2025_26_parses() -> None:
    text = summary_2025_26(*SUMMARY_ROWS)
    export = parse_export(text, "districtsummary.csv", requested="2026-06")
    assert (export.report, export.data_month, export.as_of) == (
        Report.DISTRICT_SUMMARY,
        "2026-06",
        date(2026, 7, 1),
    )
    assert summary_districts(export) == ["2", "91", "F"]
    expected = {"paid_clubs": 121.0, "total_payments": 2532.0, "payment_base": 2480.0}
    assert summary_metrics(export, "02") == summary_metrics(export, "2") == expected
    first = export.rows[0]
    assert first.text["REGION"] == "01"
    assert (first.numbers["Distinguished Clubs"], first.numbers["Smedley Distinguished Clubs"]) == (
        20.0,
        2.0,
    )
    assert first.numbers["Total Distinguished Clubs"] == 45.0
    assert first.numbers["% Payment Growth"] == 2.10
    assert first.numbers["Presidents Distinguished Clubs"] == 9.0


def test_the_simulator_renders_the_2025_26_layout_every_cell_quoted() -> None:
    text = Simulator(seed=3).district_summary_csv("2026-05", date(2026, 6, 2))
    lines = text.split("\r\n")
    assert lines[0] == SUMMARY_2025_26
    rows = list(csv.reader(lines[1:-2]))
    assert all(line.startswith('"') and line.endswith('"') for line in lines[1:-2])
    assert all(len(row) == 25 for row in rows)
    assert [row[1] for row in rows[:3]] == ["01", "02", "03"]  # DISTRICT zero-padded
    assert lines[-2] == "Month of May, As of 06/01/2026" and lines[-1] == ""
    export = parse_export(text, "districtsummary.csv", requested="2026-05")
    assert summary_districts(export)[:3] == ["1", "2", "3"]
    assert summary_metrics(export, "02")["paid_clubs"] == float(rows[1][16])


# --- whole runs (`recon run --source FOLDER`) on folders of real exports ----------------

ARCHIVE_2023 = f"{SHUBHWIP}/clubperformance/(2022-2023)/06.csv"


def source_folder(real: Path, root: Path, files: dict[str, str]) -> Path:
    """A folder source built at test time: each ``<date>/<file name>`` a copy of a real
    file (a copy, not a link: a link out of a source folder is refused)."""
    for name, path in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real / path, root / name)
    return root


def test_an_archive_export_after_month_end_is_the_final_snapshot(
    real: Path, tmp_path: Path
) -> None:
    folder = source_folder(real, tmp_path / "exports", {
        "2023-07-01/clubperformance_91.csv": ARCHIVE_2023,
    })  # fmt: skip
    assert recon_run(folder, tmp_path / "recon.db", "2023-06") == 0
    jobs, finals = results(tmp_path / "recon.db", "2023-06")
    job, final = jobs["91"], finals["91"]
    assert (job.status, job.reason, job.checks) == (JobStatus.COMPLETED, Reason.CLOSING_ENDED, 1)
    assert job.final_as_of == final.as_of == ARCHIVE_AS_OF and final.data_month == "2023-06"
    table = _table(real, ARCHIVE_2023)
    assert final.metrics["clubs"] == len(table) == 175
    assert final.metrics["membership"] == sum(int(row["Active Members"]) for row in table)
    assert dict(final.metrics) == club_metrics(_parse(real, ARCHIVE_2023, requested="2023-06"))


def test_missed_days_and_zero_padded_file_names_without_a_summary(
    real: Path, tmp_path: Path
) -> None:
    folder = source_folder(real, tmp_path / "exports", {  # July 1 missed, 21 also July 2-3
        "2024-07-02/clubperformance_91.csv": f"{SHUBHWIP}/clubperformance/(2023-2024)/06.csv",
        "2024-07-04/clubperformance_021.csv": f"{TM_DCP}/cp_closed.csv",
    })  # fmt: skip
    assert recon_run(folder, tmp_path / "recon.db", "2024-06") == 0  # districts from the files
    jobs, finals = results(tmp_path / "recon.db", "2024-06")
    assert sorted(jobs) == ["21", "91"]
    expected = {"21": (date(2024, 7, 4), date(2026, 9, 22), 109),
                "91": (date(2024, 7, 2), ARCHIVE_AS_OF, 179)}  # fmt: skip
    for district, (checked, as_of, clubs) in expected.items():
        job = jobs[district]
        assert (job.status, job.reason, job.checks) == (
            JobStatus.COMPLETED,
            Reason.CLOSING_ENDED,
            1,
        )
        assert (job.last_check_date, job.final_as_of) == (checked, as_of)
        assert finals[district].metrics["clubs"] == clubs
        assert "paid_clubs" not in finals[district].metrics  # no summary beside them


def test_a_summary_beside_an_archive_export_is_read_as_the_requested_month(
    real: Path, tmp_path: Path
) -> None:
    folder = source_folder(real, tmp_path / "exports", {
        "2023-07-01/clubperformance_91.csv": ARCHIVE_2023,
    })  # fmt: skip
    summary = summary_2025_26(*SUMMARY_ROWS).replace("07/01/2026", "09/13/2025")
    (folder / "2023-07-01" / "districtsummary.csv").write_text(summary, newline="")
    assert recon_run(folder, tmp_path / "recon.db", "2023-06", "--districts", "091") == 0
    jobs, finals = results(tmp_path / "recon.db", "2023-06")
    assert (jobs["91"].reason, jobs["91"].final_as_of) == (Reason.CLOSING_ENDED, ARCHIVE_AS_OF)
    assert finals["91"].metrics["paid_clubs"] == 179 and finals["91"].metrics["clubs"] == 175
