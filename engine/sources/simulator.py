"""A deterministic simulator of the district dashboard and its CSV exports.

Everything derives from the seed, and each district, month and closing
calendar entry draws from its own ``random.Random(f"{seed}:...")``, so the
exports are the same whatever the order of the calls or the threads making them.

Model
    *Districts*: :data:`DISTRICTS`, numbered 1-130 with gaps plus the lettered
    F and U; each has 40-160 clubs in divisions and areas. Every club follows
    its own course through the program year (July-June): members grow or
    shrink from its membership base, DCP goals and new members accumulate,
    renewals arrive in the October and April periods. Distinguished levels
    follow the DCP rules (:func:`distinguished_level`).

    *Closing calendar*: :meth:`Simulator.closing_end` is the last collection
    date on which the dashboard still publishes a month. It is drawn from the
    real distribution (0-29 days after month end, median 8, mean about 9.2;
    June 12-29 days) unless a calendar (:func:`load_calendar`) gives it.

    *Publication*: on collection date ``c`` the dashboard shows data as of
    ``c - 1``: the requested month while ``c <= closing_end(month)``,
    afterwards the next month's data, and the footer names that month.

    *Revisions*: a month's figures start from an opening state and receive
    revisions (late membership payments, club status changes, DCP goals
    credited late, which can move distinguished levels). They land mostly in
    the first days after the month end, occasionally later, always by the
    closing date: from the closing date on, the month's figures are final.

Injection (both default to 0)
    ``latency_ms``: each export request waits this long on the caller's
    :class:`~engine.cancel.CancelToken`, so a cancelled or timed-out fetch
    stops waiting at once.

    ``failure_rate``: the share of export requests that fail with a transient
    :class:`~engine.errors.SourceError`. Each request's draw is keyed by the
    seed, the district, month and collection date asked for and how many times
    they were asked for before: the same requests fail however threads
    interleave, and a retried request can succeed.

HTTP
    :func:`serve_simulator` serves the same exports on a loopback address at
    URLs shaped like the real dashboard's (``/export.aspx?type=CSV&report=...``,
    see :func:`engine.sources.parse.report_param`), with its own fault modes for
    reliability tests.
"""

from __future__ import annotations

import contextlib
import csv
import io
import ipaddress
import json
import math
import random
import socket
import struct
import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from engine.cancel import NEVER, CancelToken
from engine.domain.models import month_end, next_month, validate_district, validate_month
from engine.errors import ConfigError, ItemCancelled, ParseError, SourceError
from engine.sources.parse import Report, parse_report_param

_GAPS = frozenset({45, 119})
DISTRICTS: tuple[str, ...] = tuple(str(n) for n in range(1, 131) if n not in _GAPS) + ("F", "U")
"""Every simulated district, numbered ones first: 130 in all, the size of a month-end close."""

# Weights of 0, 1, ..., 18 days from month end to the closing date of a month
# other than June. With June drawn from 12-29 days this gives the real
# distribution of 116 months (2017-2026): median 8 days, mean about 9.2.
_CLOSING_WEIGHTS = (2, 3, 3, 4, 6, 8, 9, 10, 11, 9, 7, 6, 5, 4, 3, 2, 1, 2, 2)
_JUNE_DAYS = (12, 29)
_MAX_CALENDAR_DAYS = 62

# fmt: off
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LEVEL_WORDS = {
    "": "", "D": "Distinguished", "S": "Select Distinguished",
    "P": "President's Distinguished", "M": "Smedley Distinguished",
}
_PLACES = (
    "Harbor", "Sunrise", "Downtown", "Lakeside", "Capitol", "Riverside", "Summit", "Pioneer",
    "Golden Gate", "Maple Leaf", "Civic", "Airport", "Northside", "Valley", "Bayview", "Cedar",
)
_KINDS = ("Toastmasters", "Speakers", "Orators", "Communicators", "Speakeasy", "Club")
# A few names that need CSV quoting, as real club names do.
_ODD_NAMES = ('Speak, Lead & Grow', 'The "Early Birds"', "Voices, Unlimited")

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


def distinguished_level(goals: int, members: int, base: int) -> str:
    """DCP level code ('' | D | S | P | M) by the rules in DESIGN.md section 2."""
    growth = members - base
    if goals >= 10 and members >= 25:
        return "M"
    if goals >= 9 and members >= 20:
        return "P"
    if goals >= 7 and (members >= 20 or growth >= 5):
        return "S"
    if goals >= 5 and (members >= 20 or growth >= 3):
        return "D"
    return ""


@dataclass(frozen=True, slots=True)
class Club:
    """A club's identity and its course over the program year."""

    number: int
    name: str
    division: str
    area: int
    base: int  # Mem. Base: members at the start of the program year
    growth: int  # net growth reached by June
    goals: int  # DCP goals reached by June
    new_members: int  # new members by June
    standing: str  # 'good', 'suspended' or 'ineligible' for the year


@dataclass(frozen=True, slots=True)
class ClubState:
    """A club's figures as published on one day."""

    club: Club
    standing: str
    active: int
    new: int
    goals: int
    oct_ren: int
    apr_ren: int
    late_ren: int

    @property
    def status(self) -> str:
        if self.standing != "good":
            return self.standing.capitalize()
        return "Low" if self.active < 8 else "Active"

    @property
    def level(self) -> str:
        """Distinguished level; only clubs in good standing qualify."""
        if self.standing != "good":
            return ""
        return distinguished_level(self.goals, self.active, self.club.base)

    @property
    def payments(self) -> int:
        return self.new + self.oct_ren + self.apr_ren + self.late_ren


@dataclass(frozen=True, slots=True)
class Revision:
    """A change to one club that the dashboard publishes from ``lands`` on."""

    club: int  # index in the district's clubs
    kind: str  # 'new' member, late 'renewal', 'goal' credited, 'status' change
    amount: int
    lands: date  # first collection date showing it

    def apply(self, state: ClubState) -> ClubState:
        s, n = state, self.amount
        active, new, goals, late, standing = s.active, s.new, s.goals, s.late_ren, s.standing
        if self.kind == "new":
            active, new = active + n, new + n
        elif self.kind == "renewal":
            active, late = active + n, late + n
        elif self.kind == "goal":
            goals = min(10, goals + n)
        else:
            # Status changes settle the year's standing: reinstated, or suspension processed.
            standing = "suspended" if s.club.standing == "good" else "good"
        # One constructor call, not dataclasses.replace: this runs for every landed
        # revision of every request, and replace costs several times more.
        return ClubState(s.club, standing, active, new, goals, s.oct_ren, s.apr_ren, late)


@dataclass(frozen=True)
class _District:
    region: int
    clubs: tuple[Club, ...]
    club_base: int
    payment_base: int
    row_starts: tuple[str, ...]  # each club's first five CSV cells, rendered once


@dataclass(frozen=True)
class _Month:
    opening: tuple[ClubState, ...]
    revisions: tuple[Revision, ...]
    opening_lines: tuple[str, ...]  # club performance rows of the opening states


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Memo(Generic[K, V]):
    """A small bounded, thread-safe memo; the oldest entries go first."""

    def __init__(self, maxsize: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()  # outside the lock: values are deterministic, a rare double is harmless
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)
        return value


class Simulator:
    """The district dashboard, simulated. Thread-safe.

    :param seed: everything published derives from it.
    :param latency_ms: waited once per export request (on the caller's CancelToken).
    :param failure_rate: share of export requests failing with a transient SourceError.
    :param calendar: closing date per data month (``{"2025-06": date(2025, 7, 20)}``);
        other months are drawn from the real distribution.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        latency_ms: float = 0.0,
        failure_rate: float = 0.0,
        calendar: Mapping[str, date] | None = None,
    ) -> None:
        self.seed = seed
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self._calendar = {m: _check_closing(m, d) for m, d in (calendar or {}).items()}
        self._districts: _Memo[str, _District] = _Memo(len(DISTRICTS))
        self._months: _Memo[tuple[str, str], _Month] = _Memo(1024)
        self._summaries: _Memo[tuple[str, date], str] = _Memo(64)
        self._asked: dict[tuple[str, str, date], int] = {}  # requests so far, by export
        self._lock = threading.Lock()
        self._requests = 0

    def districts(self) -> list[str]:
        return list(DISTRICTS)

    def requests(self) -> int:
        """Export requests answered or failed so far (each waited ``latency_ms``)."""
        with self._lock:
            return self._requests

    def closing_end(self, month: str) -> date:
        """Last collection date on which the dashboard still publishes ``month``."""
        month = validate_month(month)
        if month in self._calendar:
            return self._calendar[month]
        rng = random.Random(f"{self.seed}:closing:{month}")
        if month.endswith("-06"):
            days = rng.randint(*_JUNE_DAYS)
        else:
            days = rng.choices(range(len(_CLOSING_WEIGHTS)), weights=_CLOSING_WEIGHTS)[0]
        return month_end(month) + timedelta(days=days)

    def published_month(self, month: str, collection_date: date) -> str:
        """The data month shown on ``collection_date`` to a request for ``month``."""
        while collection_date > self.closing_end(month):
            month = next_month(month)
        return month

    def clubs(self, district: str, month: str, collection_date: date) -> list[ClubState]:
        """``month``'s club figures with the revisions landed by ``collection_date``."""
        data = self._month(self._district_id(district), validate_month(month))
        states = list(data.opening)
        for rev in data.revisions:
            if rev.lands <= collection_date:
                states[rev.club] = rev.apply(states[rev.club])
        return states

    def revisions(self, district: str, month: str) -> tuple[Revision, ...]:
        return self._month(self._district_id(district), validate_month(month)).revisions

    def club_performance_csv(
        self, district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> str:
        """The club performance export of ``district`` on ``collection_date``."""
        district, data_month = self._request(district, month, collection_date, cancel)
        states = self.clubs(district, data_month, collection_date)
        data, starts = self._month(district, data_month), self._district(district).row_starts
        # Only the clubs revised since the opening are rendered again.
        lines = [
            line if state is first else _club_line(start, state)
            for start, first, line, state in zip(
                starts, data.opening, data.opening_lines, states, strict=True
            )
        ]
        return "".join(
            (_CLUB_PERFORMANCE_HEADER_LINE, *lines, _footer(data_month, collection_date))
        )

    def district_performance_csv(
        self, district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> str:
        """The district performance export (payments per club) of ``district``."""
        district, data_month = self._request(district, month, collection_date, cancel)
        states = self.clubs(district, data_month, collection_date)
        return _csv(
            DISTRICT_PERFORMANCE_HEADER,
            [_payment_row(district, s) for s in states],
            data_month,
            collection_date,
        )

    def district_summary_csv(
        self, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> str:
        """The district summary export: one row per district."""
        _, data_month = self._request("", month, collection_date, cancel)
        return self._summaries.get(
            (data_month, collection_date), lambda: self._summary(data_month, collection_date)
        )

    def _summary(self, month: str, collection_date: date) -> str:
        rows = [self._summary_row(d, month, collection_date) for d in DISTRICTS]
        return _csv(DISTRICT_SUMMARY_HEADER, rows, month, collection_date)

    def _summary_row(self, district: str, month: str, collection_date: date) -> list[str]:
        info = self._district(district)
        paid = payments = active = 0
        levels = dict.fromkeys(("", "D", "S", "P", "M"), 0)
        # One pass over the clubs: this runs for every district of every summary.
        for s in self.clubs(district, month, collection_date):
            payments += s.payments
            if s.standing == "good":
                paid += 1
                active += s.status == "Active"
            levels[s.level] += 1
        return [
            district,
            f"{info.region:02d}",
            f"{paid:,}",
            f"{info.club_base:,}",
            _pct(paid, info.club_base),
            f"{payments:,}",
            f"{info.payment_base:,}",
            _pct(payments, info.payment_base),
            str(active),
            str(sum(levels.values()) - levels[""]),
            str(levels["S"]),
            str(levels["P"]),
        ]

    def _request(
        self, district: str, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        """Validate one export request, apply latency and failures; district and data month."""
        month = validate_month(month)
        district = self._district_id(district) if district else ""
        if collection_date <= date(int(month[:4]), int(month[5:]), 1):
            raise SourceError(
                f"no data before the month starts (collection date {collection_date})",
                district=district,
                month=month,
            )
        if self.latency_ms > 0:
            cancel.wait(self.latency_ms / 1000)
        with self._lock:
            self._requests += 1
            key = (district, month, collection_date)
            asked = 0
            if self.failure_rate > 0:  # counted only for the draws, which need it
                asked = self._asked[key] = self._asked.get(key, 0) + 1
        if asked and _draw(self.seed, key, asked) < self.failure_rate:
            raise SourceError(
                "simulated transient failure", district=district, month=month, transient=True
            )
        return district, self.published_month(month, collection_date)

    def _district_id(self, district: str) -> str:
        district = validate_district(district)
        if district not in DISTRICTS:
            raise SourceError("unknown district", district=district)
        return district

    def _district(self, district: str) -> _District:
        return self._districts.get(district, lambda: _make_district(self.seed, district))

    def _month(self, district: str, month: str) -> _Month:
        return self._months.get((district, month), lambda: self._make_month(district, month))

    def _make_month(self, district: str, month: str) -> _Month:
        rng = random.Random(f"{self.seed}:{district}:{month}")
        position = (int(month[5:]) - 7) % 12  # 0 = July ... 11 = June
        info = self._district(district)
        opening = tuple(_opening(c, position, rng) for c in info.clubs)
        end = month_end(month)
        span = (self.closing_end(month) - end).days
        revisions = tuple(
            _revision(rng, len(opening), end, span)
            for _ in range(round(len(opening) * rng.uniform(0.15, 0.5)))
        )
        lines = tuple(
            _club_line(start, s) for start, s in zip(info.row_starts, opening, strict=True)
        )
        return _Month(opening, revisions, lines)


# --- model -------------------------------------------------------------------


def _make_district(seed: int, district: str) -> _District:
    rng = random.Random(f"{seed}:district:{district}")
    count = rng.randint(40, 160)
    numbers = rng.sample(range(1000, 8_000_000), count)
    clubs = tuple(_make_club(rng, number, i) for i, number in enumerate(numbers))
    members = sum(c.base for c in clubs)
    return _District(
        region=rng.randint(1, 14),
        clubs=clubs,
        club_base=count + rng.randint(-4, 4),
        payment_base=round(members * rng.uniform(1.7, 2.1)),
        row_starts=tuple(_row_start(district, c) for c in clubs),
    )


def _draw(seed: int, key: tuple[str, str, date], asked: int) -> float:
    """The failure draw of the ``asked``-th request for ``key``."""
    district, month, collection_date = key
    return random.Random(f"{seed}:fail:{district}:{month}:{collection_date}:{asked}").random()


def _make_club(rng: random.Random, number: int, index: int) -> Club:
    area = index // 5 + 1  # areas of five clubs, divisions of five areas
    name = (
        rng.choice(_ODD_NAMES)
        if rng.random() < 0.03
        else f"{rng.choice(_PLACES)} {rng.choice(_KINDS)}"
    )
    return Club(
        number=number,
        name=name,
        division=chr(ord("A") + (area - 1) // 5),
        area=area,
        base=round(rng.triangular(8, 40, 18)),
        growth=rng.randint(-6, 10),
        goals=min(10, max(0, round(rng.gauss(5.5, 3.0)))),
        new_members=rng.randint(0, 16),
        standing=rng.choices(("good", "suspended", "ineligible"), weights=(95, 3, 2))[0],
    )


def _opening(club: Club, position: int, rng: random.Random) -> ClubState:
    """A club's figures for the month before any late revision."""
    share = (position + 1) / 12
    return ClubState(
        club=club,
        standing=club.standing,
        active=max(0, club.base + round(club.growth * share) + rng.randint(-1, 1)),
        new=round(club.new_members * share),
        goals=min(10, round(club.goals * share)),
        oct_ren=round(club.base * 0.9 * min(1.0, (position + 1) / 4)),
        apr_ren=round(club.base * 0.85 * min(1.0, max(0, position - 7) / 3)),
        late_ren=club.base // 10 if position >= 4 else 0,
    )


def _revision(rng: random.Random, clubs: int, end: date, span: int) -> Revision:
    kind = rng.choices(("new", "renewal", "goal", "status"), weights=(35, 35, 20, 10))[0]
    amount = rng.randint(1, 3) if kind in ("new", "renewal") else 1
    return Revision(rng.randrange(clubs), kind, amount, end + timedelta(days=_landing(rng, span)))


def _landing(rng: random.Random, span: int) -> int:
    """Days after month end a revision lands: mostly 1-4, sometimes up to the closing date."""
    if span <= 0:
        return 0
    if rng.random() < 0.8:
        return min(span, 1 + int(rng.expovariate(0.5)))
    return rng.randint(1, span)


# --- rendering -----------------------------------------------------------------


def _csv(header: Sequence[str], rows: list[list[str]], data_month: str, collected: date) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    out.write(_footer(data_month, collected))
    return out.getvalue()


def _csv_line(cells: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


def _footer(data_month: str, collected: date) -> str:
    as_of = collected - timedelta(days=1)
    return f"Month of {_MONTH_ABBR[int(data_month[5:]) - 1]}, As of {as_of:%m/%d/%Y}\r\n"


_CLUB_PERFORMANCE_HEADER_LINE = _csv_line(CLUB_PERFORMANCE_HEADER)


def _row_start(district: str, c: Club) -> str:
    """``district,division,area,number,name,`` as the csv module writes them (names get quoted)."""
    return _csv_line([district, c.division, str(c.area), str(c.number), c.name])[:-2] + ","


def _club_line(start: str, s: ClubState) -> str:
    """One club performance row after its ``_row_start``.

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


def _payment_row(district: str, s: ClubState) -> list[str]:
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


def _pct(value: int, base: int) -> str:
    return f"{100 * (value - base) / base:.2f}%"


# --- closing calendar ----------------------------------------------------------


def load_calendar(path: str | Path) -> dict[str, date]:
    """Read a JSON object mapping data month to its last closing collection date.

    ``{"2025-06": "2025-07-20"}``: June 2025's data is published until the
    collection of 2025-07-20. A bad file raises ConfigError naming the file and key.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("calendar", str(path), f"cannot read the file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError("calendar", str(path), f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("calendar", str(path), 'expected a JSON object {"YYYY-MM": "YYYY-MM-DD"}')
    calendar: dict[str, date] = {}
    for key, value in data.items():
        try:
            calendar[validate_month(key)] = _check_closing(key, date.fromisoformat(value))
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"calendar {path} [{key!r}]",
                value,
                f"expected a YYYY-MM key and a YYYY-MM-DD date 0-{_MAX_CALENDAR_DAYS} days "
                "after that month's end",
            ) from exc
    return calendar


def _check_closing(month: str, closing: date) -> date:
    days = (closing - month_end(validate_month(month))).days
    if not 0 <= days <= _MAX_CALENDAR_DAYS:
        raise ConfigError(
            f"calendar[{month!r}]",
            closing.isoformat(),
            f"closing date must be 0-{_MAX_CALENDAR_DAYS} days after the month end",
        )
    return closing


# --- export folder -------------------------------------------------------------


def export_dates(sim: Simulator, month: str, *, extra_days: int = 3) -> list[date]:
    """Collection dates from the day after month end to ``extra_days`` past the closing date."""
    end = month_end(month)
    days = (sim.closing_end(month) - end).days + extra_days
    return [end + timedelta(days=i) for i in range(1, days + 1)]


def export_folder(
    sim: Simulator,
    month: str,
    out: str | Path,
    *,
    districts: Sequence[str] | None = None,
    extra_days: int = 3,
) -> Iterator[Path]:
    """Write the exports a folder source reads; yield each file written.

    Layout: ``<out>/<YYYY-MM-DD>/districtsummary.csv`` and
    ``<out>/<YYYY-MM-DD>/clubperformance_<district>.csv`` per collection date.
    """
    for day in export_dates(sim, month, extra_days=extra_days):
        folder = Path(out) / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        yield _write(folder / "districtsummary.csv", sim.district_summary_csv(month, day))
        for district in districts or sim.districts():
            text = sim.club_performance_csv(district, month, day)
            yield _write(folder / f"clubperformance_{district}.csv", text)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# --- HTTP server -----------------------------------------------------------------

_FAULTS = ("error", "reset", "hang")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: SimulatorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up is expected under fault injection.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.app.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the CLI prints its own lines."""


class SimulatorServer:
    """The simulator over HTTP on a loopback address, in a background thread.

    Use :func:`serve_simulator` to start one; ``url`` is its base URL and
    ``shutdown()`` stops it (also as a context manager).
    """

    def __init__(
        self,
        sim: Simulator,
        host: str,
        port: int,
        *,
        failure_rate: float,
        hang_s: float,
        malformed: Collection[str],
        missing: Collection[str],
    ) -> None:
        self.sim = sim
        self._failure_rate = failure_rate
        self._hang_s = hang_s
        self._malformed = {validate_district(d) for d in malformed}
        self._missing = {validate_district(d) for d in missing}
        self._stopping = CancelToken()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults = 0
        try:
            self._httpd = _HTTPServer((host, port), _Handler)
        except OSError as exc:
            raise ConfigError("port", port, f"cannot listen on {host}:{port}: {exc}") from exc
        self._httpd.app = self
        bound_host, bound_port = self._httpd.server_address[:2]
        self.url = f"http://{bound_host!s}:{bound_port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that shutdown() returns promptly
            name="simulator-http",
            daemon=True,
        )
        self._thread.start()

    def requests(self, report: str | None = None) -> int:
        """Export requests received so far, of one report type or all."""
        with self._lock:
            return self._counts[report] if report else sum(self._counts.values())

    def shutdown(self) -> None:
        self._stopping.cancel("simulator server stopped")
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query, keep_blank_values=True)
        report = query.get("report", [""])[0]
        fault = self._count(report.split("~")[0])
        if fault is not None:
            self._inject(fault, h)
            return
        status, body = self._respond(url.path, query, report)
        data = body.encode("utf-8")
        h.send_response(status)
        h.send_header("Content-Type", "text/csv; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _count(self, report: str) -> str | None:
        """Count a request; the fault to inject, evenly spread at ``failure_rate``."""
        with self._lock:
            self._counts[report] += 1
            n = sum(self._counts.values())
            if math.floor(n * self._failure_rate) == math.floor((n - 1) * self._failure_rate):
                return None
            self._faults += 1
            return _FAULTS[(self._faults - 1) % len(_FAULTS)]

    def _inject(self, fault: str, h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        if fault == "error":
            h.send_error(500, "simulated server error")
        elif fault == "reset":
            # Linger 0 makes close() send a TCP reset instead of a clean end.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        else:
            with contextlib.suppress(ItemCancelled):
                self._stopping.wait(self._hang_s)

    def _respond(self, path: str, query: dict[str, list[str]], report: str) -> tuple[int, str]:
        if path != "/export.aspx":
            return 404, "not found"
        if query.get("type", [""])[0].upper() != "CSV":
            return 400, "expected type=CSV"
        try:
            req = parse_report_param(report)
        except ParseError as exc:
            return 400, f"malformed report parameter: {exc}"
        if req.report not in {r.value for r in Report} or req.district in self._missing:
            return 404, "no such report or district"
        try:
            return 200, self._render(req.report, req.district, req.month, req.collection_date)
        except SourceError as exc:
            return (500 if exc.transient else 404), str(exc)
        except ConfigError as exc:  # e.g. a collection date beyond the simulated years
            return 400, str(exc)
        except ItemCancelled:
            return 503, "server stopping"

    def _render(self, report: str, district: str, month: str, collected: date) -> str:
        if report == Report.DISTRICT_SUMMARY:
            return self.sim.district_summary_csv(month, collected, self._stopping)
        if report == Report.DISTRICT_PERFORMANCE:
            return self.sim.district_performance_csv(district, month, collected, self._stopping)
        text = self.sim.club_performance_csv(district, month, collected, self._stopping)
        # A permanently broken export: cut off mid-file, as a failed transfer would.
        return text[: len(text) // 2] if district in self._malformed else text


def serve_simulator(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    failure_rate: float = 0.0,
    hang_s: float = 120.0,
    malformed: Collection[str] = (),
    missing: Collection[str] = (),
) -> SimulatorServer:
    """Serve ``sim``'s exports over HTTP in a background thread.

    :param host: a loopback address; anything else is refused (ConfigError).
    :param port: 0 picks a free port (see ``.url``).
    :param failure_rate: share of requests that fail transiently, evenly spread
        and cycling through HTTP 500, a connection reset and a hang.
    :param hang_s: how long a hang lasts; make it longer than the client's timeout.
    :param malformed: districts whose club performance export is served broken.
    :param missing: districts answered with 404.
    """
    _check_loopback(host)
    return SimulatorServer(
        sim,
        host,
        port,
        failure_rate=failure_rate,
        hang_s=hang_s,
        malformed=malformed,
        missing=missing,
    )


def _check_loopback(host: str) -> None:
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise ConfigError("host", host, "the simulator only listens on IPv4 loopback (127.0.0.1)")
