"""The CSV exports as the dashboard writes them: headers, rows and the ``Month of`` footer."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
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
# Today's layout (2025-26 on; header quoted in shared/real-exports/SOURCES.md): 25 columns,
# REGION first, REGION and DISTRICT zero-padded, every cell quoted. The parser reads it
# and the older 12-column one.
DISTRICT_SUMMARY_HEADER = (
    "REGION", "DISTRICT", "DSP", "Training", "Market Analysis", "Communication Plan",
    "Region Advisor Visit", "New Payments", "April Payments", "October Payments",
    "Late Payments", "Charter Payments", "Total YTD Payments", "Payment Base",
    "% Payment Growth", "Paid Club Base", "Paid Clubs", "% Club Growth", "Active Clubs",
    "Distinguished Clubs", "Select Distinguished Clubs", "Presidents Distinguished Clubs",
    "Smedley Distinguished Clubs", "Total Distinguished Clubs", "% Distinguished Clubs",
)
DISTRICT_PERFORMANCE_HEADER = (
    "District", "Division", "Area", "Club", "Club Name", "New", "Late Ren.", "Oct. Ren.",
    "Apr. Ren.", "Total Ren.", "Total Chart", "Total to Date", "Distinguished Status",
    "Charter Date/Suspend Date",
)
# fmt: on


def csv_text(
    header: Sequence[str],
    rows: list[list[str]],
    data_month: str,
    collected: date,
    *,
    quote_all: bool = False,
) -> str:
    """The export's text; ``quote_all``: every cell quoted, as the real files have them."""
    out = io.StringIO()
    if quote_all:
        writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    else:
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


def summary_row(
    district: str,
    region: int,
    goals: Sequence[bool],
    bases: tuple[int, int],
    states: Iterable[ClubState],
) -> list[str]:
    """One district's row of :data:`DISTRICT_SUMMARY_HEADER`.

    ``goals``: the five district goals met (DSP .. Region Advisor Visit); ``bases``:
    the paid club base and the payment base; ``states``: the district's clubs.
    """
    club_base, payment_base = bases
    paid = active = 0
    payments = [0, 0, 0, 0]  # new, April, October, late
    levels = dict.fromkeys(("", "D", "S", "P", "M"), 0)
    # One pass over the clubs: this runs for every district of every summary.
    for s in states:
        payments[0] += s.new
        payments[1] += s.apr_ren
        payments[2] += s.oct_ren
        payments[3] += s.late_ren
        if s.standing == "good":
            paid += 1
            active += s.status == "Active"
        levels[s.level] += 1
    total, distinguished = sum(payments), sum(levels.values()) - levels[""]
    return [
        f"{region:02d}",
        district.zfill(2) if district.isdigit() else district,  # "02", as the real file
        *("Y" if met else "N" for met in goals),
        *(f"{n:,}" for n in payments),
        "0",  # charter payments: the model charters no club
        f"{total:,}",
        f"{payment_base:,}",
        pct(total, payment_base),
        f"{club_base:,}",
        f"{paid:,}",
        pct(paid, club_base),
        str(active),
        *(str(levels[code]) for code in ("D", "S", "P", "M")),
        str(distinguished),
        f"{100 * distinguished / paid if paid else 0:.2f}%",
    ]
