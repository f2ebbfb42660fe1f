"""The simulator: publication of the model's figures as exports, with injected latency and failures.

*Publication*: on collection date ``c`` the dashboard shows data as of
``c - 1``: the requested month while ``c <= closing_end(month)``, afterwards
the next month's data, and the footer names that month. From the closing date
on, the month's figures are final. The simulator publishes by its clock: a
collection date after its today has no data yet (a non-transient
:class:`~engine.errors.SourceError`).

*Injection* (both default to 0): ``latency_ms``: each export request waits
this long on the caller's :class:`~engine.cancel.CancelToken`, so a cancelled
or timed-out fetch stops waiting at once. ``failure_rate``: the share of export
requests that fail with a transient :class:`~engine.errors.SourceError`. Each
request's draw is keyed by the seed, the district, month and collection date
asked for and how many times they were asked for before: the same requests
fail however threads interleave, and a retried request can succeed.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from engine.cancel import NEVER, CancelToken
from engine.clock import Clock, SystemClock
from engine.domain.models import month_end, next_month, validate_district, validate_month
from engine.errors import SourceError
from engine.sources.sim.calendar import check_closing, drawn_closing_end
from engine.sources.sim.model import (
    DISTRICTS,
    Club,
    ClubState,
    Revision,
    draw_revision,
    make_club,
    opening_state,
)
from engine.sources.sim.render import (
    CLUB_PERFORMANCE_HEADER_LINE,
    DISTRICT_PERFORMANCE_HEADER,
    DISTRICT_SUMMARY_HEADER,
    club_line,
    csv_text,
    footer,
    payment_row,
    row_start,
    summary_row,
)


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
    :param clock: decides today, the last collection date with data (default: the system's).
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        latency_ms: float = 0.0,
        failure_rate: float = 0.0,
        calendar: Mapping[str, date] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.seed = seed
        self._clock = clock or SystemClock()
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self._calendar = {m: check_closing(m, d) for m, d in (calendar or {}).items()}
        self._districts: _Memo[str, _District] = _Memo(len(DISTRICTS))
        self._months: _Memo[tuple[str, str], _Month] = _Memo(1024)
        self._summaries: _Memo[tuple[str, date], str] = _Memo(64)
        self._asked: dict[tuple[str, str, date], int] = {}  # requests so far, by export
        self._lock = threading.Lock()
        self._requests = 0

    def districts(self) -> list[str]:
        return list(DISTRICTS)

    def today(self) -> date:
        """The last collection date the simulator publishes data for."""
        return self._clock.now().date()

    def requests(self) -> int:
        """Export requests answered or failed so far (each waited ``latency_ms``)."""
        with self._lock:
            return self._requests

    def closing_end(self, month: str) -> date:
        """Last collection date on which the dashboard still publishes ``month``."""
        month = validate_month(month)
        if month in self._calendar:
            return self._calendar[month]
        return drawn_closing_end(self.seed, month)

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
            line if state is first else club_line(start, state)
            for start, first, line, state in zip(
                starts, data.opening, data.opening_lines, states, strict=True
            )
        ]
        return "".join((CLUB_PERFORMANCE_HEADER_LINE, *lines, footer(data_month, collection_date)))

    def district_performance_csv(
        self, district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> str:
        """The district performance export (payments per club) of ``district``."""
        district, data_month = self._request(district, month, collection_date, cancel)
        states = self.clubs(district, data_month, collection_date)
        return csv_text(
            DISTRICT_PERFORMANCE_HEADER,
            [payment_row(district, s) for s in states],
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
        return csv_text(DISTRICT_SUMMARY_HEADER, rows, month, collection_date, quote_all=True)

    def _summary_row(self, district: str, month: str, collection_date: date) -> list[str]:
        info = self._district(district)
        goals = random.Random(f"{self.seed}:goals:{district}:{month}").choices((True, False), k=5)
        bases = (info.club_base, info.payment_base)
        states = self.clubs(district, month, collection_date)
        return summary_row(district, info.region, goals, bases, states)

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
        data_month = self.published_month(month, collection_date)
        if collection_date > self.today():
            raise SourceError(
                f"no data published yet for collection date {collection_date} "
                f"(today is {self.today()})",
                district=district,
                month=month,
            )
        return district, data_month

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
        opening = tuple(opening_state(c, position, rng) for c in info.clubs)
        end = month_end(month)
        span = (self.closing_end(month) - end).days
        revisions = tuple(
            draw_revision(rng, len(opening), end, span)
            for _ in range(round(len(opening) * rng.uniform(0.15, 0.5)))
        )
        lines = tuple(
            club_line(start, s) for start, s in zip(info.row_starts, opening, strict=True)
        )
        return _Month(opening, revisions, lines)


def _make_district(seed: int, district: str) -> _District:
    rng = random.Random(f"{seed}:district:{district}")
    count = rng.randint(40, 160)
    numbers = rng.sample(range(1000, 8_000_000), count)
    clubs = tuple(make_club(rng, number, i) for i, number in enumerate(numbers))
    members = sum(c.base for c in clubs)
    return _District(
        region=rng.randint(1, 14),
        clubs=clubs,
        club_base=count + rng.randint(-4, 4),
        payment_base=round(members * rng.uniform(1.7, 2.1)),
        row_starts=tuple(row_start(district, c) for c in clubs),
    )


def _draw(seed: int, key: tuple[str, str, date], asked: int) -> float:
    """The failure draw of the ``asked``-th request for ``key``."""
    district, month, collection_date = key
    return random.Random(f"{seed}:fail:{district}:{month}:{collection_date}:{asked}").random()
