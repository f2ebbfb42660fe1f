"""The CSV exports as the dashboard writes them: headers, rows and the ``Month of`` footer."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, timedelta

from engine.sources.sim.model import Club, ClubState

# fmt: off
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LEVEL_WORDS = {
    "": "", "D": "Distinguished", "S": "Select Distinguished",
    "P": "President's Distinguished", "M": "Smedley Distinguished",
}
CLUB_PERFORMANCE_HEADER = (
    "District", "Division", "Area", "Club Number", "Club Name", "Club Status", "Mem. Base",
    "Active Members", "Goals Met", "Level 1s", "Level 2s", "Add. Level 2s", "Level 3s",
    "Level 4s, Level 5s, or DTM award", "Add. Level 4s, Level 5s, or DTM award", "New Members",
    "Add. New Members", "Off. Trained Round 1", "Off. Trained Round 2", "Mem. dues on time Oct",
    "Mem. dues on time Apr", "Off. List On Time", "Club Distinguished Status",
)
DISTRICT_SUMMARY_HEADER = (
    "DISTRICT", "REGION", "Paid Clubs", "Paid Club Base", "% Club Growth", "Total YTD Payments",
    "Payment Base", "% Payment Growth", "Active Clubs", "Total Distinguished Clubs",
    "Select Distinguished Clubs", "Presidents Distinguished Clubs",
)
DISTRICT_PERFORMANCE_HEADER = (
    "District", "Division", "Area", "Club", "Club Name", "New", "Late Ren.", "Oct. Ren.",
    "Apr. Ren.", "Total Ren.", "Total Chart", "Total to Date", "Distinguished Status",
    "Charter Date/Suspend Date",
)
# fmt: on


def csv_text(header: Sequence[str], rows: list[list[str]], data_month: str, collected: date) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    out.write(footer(data_month, collected))
    return out.getvalue()


def _csv_line(cells: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


def footer(data_month: str, collected: date) -> str:
    as_of = collected - timedelta(days=1)
    return f"Month of {_MONTH_ABBR[int(data_month[5:]) - 1]}, As of {as_of:%m/%d/%Y}\r\n"


CLUB_PERFORMANCE_HEADER_LINE = _csv_line(CLUB_PERFORMANCE_HEADER)


def row_start(district: str, c: Club) -> str:
    """``district,division,area,number,name,`` as the csv module writes them (names get quoted)."""
    return _csv_line([district, c.division, str(c.area), str(c.number), c.name])[:-2] + ","


def club_line(start: str, s: ClubState) -> str:
    """One club performance row after its ``row_start``.

    The remaining cells are numbers, a status word and a level code, which CSV
    never quotes: joined directly, the line is what ``csv.writer`` writes, at a
    fraction of the cost (this renders every club of every export).
    """
    g, new = s.goals, s.new
    # cells of DCP goals 1-10 in the header's order, from the goals met
    level_9, goal_10 = 4 * (g > 8), int(g > 9)
    return (
        f"{start}{s.status},{s.club.base},{s.active},{g},"
        f"{4 * (g > 0)},{2 * (g > 1)},{2 * (g > 2)},{2 * (g > 3)},{int(g > 4)},{int(g > 5)},"
        f"{new},{max(0, min(4, new - 4))},{level_9},{level_9},{goal_10},{goal_10},{goal_10},"
        f"{s.level}\r\n"
    )


def payment_row(district: str, s: ClubState) -> list[str]:
    c = s.club
    renewals = s.oct_ren + s.apr_ren + s.late_ren
    return [
        district,
        c.division,
        str(c.area),
        str(c.number),
        c.name,
        str(s.new),
        str(s.late_ren),
        str(s.oct_ren),
        str(s.apr_ren),
        str(renewals),
        "0",
        f"{s.payments:,}",
        _LEVEL_WORDS[s.level],
        "",
    ]


def pct(value: int, base: int) -> str:
    return f"{100 * (value - base) / base:.2f}%"
