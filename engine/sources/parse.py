"""Parse the district dashboard's CSV exports into typed rows and metrics.

Three export types are recognised from their header row:

- **club performance** (one row per club of a district): membership, DCP goals,
  club status and distinguished level;
- **district summary** (one row per district): paid clubs and payments;
- **district performance** (one row per club): payments by renewal period.

Every export ends with a footer such as ``Month of Jun, As of 07/05/2025``
(month full or abbreviated, possibly quoted and padded with empty cells); it
gives the data month and the as-of date. The footer names no year: it is the
requested month's year when the footer names the requested month (the archive
of a closed program year answers with year-end data as of the download date:
``Month of Jun, As of 09/13/2025`` for June 2023), else the year that puts the
month closest to the as-of date. Numbers may carry thousands commas,
percentages a ``%``; column names vary slightly between years and are matched
through the aliases below (both club performance layouts of the real
dashboard, 23 and 25 columns, and both district summary layouts).

A distinguished code we do not know (the real dashboard has more than ''/D/S/P/M)
is kept as its own level and reported in :attr:`Export.warnings`, not refused.

Anything wrong with the input raises :class:`~engine.errors.ParseError` naming
the file or URL, the 1-based line in the file and, where it applies, the column:
among others a repeated club (or district) in one export, and an export over
the size cap. No other exception escapes :func:`parse_export` (but a malformed
requested month, the caller's error, is a ConfigError).
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from engine.domain.models import (
    OTHER_LEVEL_PREFIX,
    Snapshot,
    month_end,
    normalize_district,
    program_year,
    validate_month,
)
from engine.errors import ConfigError, ParseError
from engine.readtrace import ReadTrace
from engine.settings import DEFAULT_MAX_EXPORT_BYTES


class Report(StrEnum):
    """Export types, named as in the dashboard's export URL."""

    DISTRICT_SUMMARY = "districtsummary"
    DISTRICT_PERFORMANCE = "districtperformance"
    CLUB_PERFORMANCE = "clubperformance"


# Column kinds: how a cell is read (see _CONVERTERS).
TEXT, NUMBER, PERCENT = "text", "number", "percent"
STATUS, LEVEL, DISTRICT = "status", "level", "district"


@dataclass(frozen=True)
class Column:
    """A column we read: canonical name, value kind and the names other years use."""

    name: str
    kind: str = NUMBER
    aliases: tuple[str, ...] = ()
    required: bool = True


SPECS: Mapping[Report, tuple[Column, ...]] = MappingProxyType(
    {
        Report.CLUB_PERFORMANCE: (
            Column("Club Number", TEXT, ("Club ID", "Club Num", "Club")),
            Column("Club Name", TEXT),
            Column("Division", TEXT, required=False),
            Column("Area", TEXT, required=False),
            Column("Club Status", STATUS, ("Status",)),
            Column("Mem. Base", NUMBER, ("Membership Base", "Mem Base", "Base")),
            Column("Active Members", NUMBER, ("Active Membership", "Membership")),
            Column("Goals Met", NUMBER, ("DCP Goals", "Goals")),
            Column("New Members", NUMBER, ("New",)),
            Column("Club Distinguished Status", LEVEL, ("Distinguished Status", "Distinguished")),
        ),
        Report.DISTRICT_SUMMARY: (
            Column("DISTRICT", DISTRICT),
            Column("REGION", TEXT, required=False),
            Column("Paid Clubs", NUMBER),
            Column("Paid Club Base", NUMBER, required=False),
            Column("% Club Growth", PERCENT, ("Club Growth",), required=False),
            Column("Total YTD Payments", NUMBER, ("YTD Payments", "Total Payments")),
            Column("Payment Base", NUMBER),
            Column("% Payment Growth", PERCENT, ("Payment Growth",), required=False),
            Column("Active Clubs", NUMBER, required=False),
            Column("Distinguished Clubs", NUMBER, required=False),  # 2025-26 layout on
            Column("Total Distinguished Clubs", NUMBER, required=False),
            Column("Select Distinguished Clubs", NUMBER, required=False),
            Column(
                "Presidents Distinguished Clubs",
                NUMBER,
                ("President's Distinguished Clubs",),
                required=False,
            ),
            Column("Smedley Distinguished Clubs", NUMBER, required=False),  # 2025-26 on
        ),
        Report.DISTRICT_PERFORMANCE: (
            Column("District", DISTRICT),
            Column("Division", TEXT, required=False),
            Column("Area", TEXT, required=False),
            Column("Club", TEXT, ("Club Number", "Club ID")),
            Column("Club Name", TEXT),
            Column("New", NUMBER, ("New Members",)),
            Column("Late Ren.", NUMBER, ("Late Renewals",)),
            Column("Oct. Ren.", NUMBER, ("Oct Ren", "October Renewals")),
            Column("Apr. Ren.", NUMBER, ("Apr Ren", "April Renewals")),
            Column("Total Ren.", NUMBER, ("Total Renewals",)),
            Column("Total Chart", NUMBER, ("Total Charter",)),
            Column("Total to Date", NUMBER),
            Column("Distinguished Status", LEVEL, ("Club Distinguished Status",)),
            Column("Charter Date/Suspend Date", TEXT, required=False),
        ),
    }
)

# The header columns that identify each export type, most specific first.
_SIGNATURES = (
    (Report.CLUB_PERFORMANCE, ("Club Number", "Active Members", "Goals Met")),
    (Report.DISTRICT_SUMMARY, ("DISTRICT", "Paid Clubs", "Total YTD Payments")),
    (Report.DISTRICT_PERFORMANCE, ("Club", "Total to Date")),
)

# The column naming each row's club (or district): one row each per export.
_KEYS = MappingProxyType(
    {
        Report.CLUB_PERFORMANCE: "Club Number",
        Report.DISTRICT_SUMMARY: "DISTRICT",
        Report.DISTRICT_PERFORMANCE: "Club",
    }
)
# The distinguished level column of the per-club exports.
_LEVEL_COLUMNS = MappingProxyType(
    {
        Report.CLUB_PERFORMANCE: "Club Distinguished Status",
        Report.DISTRICT_PERFORMANCE: "Distinguished Status",
    }
)

# fmt: off
_REPORTS = frozenset(r.value for r in Report)
STATUSES = ("Active", "Suspended", "Ineligible", "Low")
LEVELS = ("D", "S", "P", "M")
_LEVEL_WORDS = {
    "": "", "none": "", "na": "", "d": "D", "s": "S", "p": "P", "m": "M",
    "distinguished": "D",
    "select": "S", "selectdistinguished": "S",
    "president": "P", "presidents": "P", "presidentsdistinguished": "P",
    "smedley": "M", "smedleydistinguished": "M",
}
_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)
# fmt: on
_STATUS_BY_KEY = {s.lower(): s for s in STATUSES}
_LEVEL_CODES = {"": "", **{code: code for code in LEVELS}}  # as the simulator writes them
_KNOWN_LEVELS = frozenset(_LEVEL_CODES)
_NOT_LETTER_RE = re.compile(r"[^a-z]")
# A code the dashboard may add (another project documents 'H'): kept as its own level.
_OTHER_CODE_RE = re.compile(r"[A-Za-z]{1,3}")
# ASCII only and matched in full: \d, \s and IGNORECASE's [a-z] would let in other
# scripts' digits, spaces and letters (U+212A, the Kelvin sign, is a 'k'), $ a trailing
# newline.
_FOOTER_RE = re.compile(
    r"month\s+of\s+([a-z]+)\.?\s*,?\s*as\s+of\s+([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})",
    re.IGNORECASE | re.ASCII,
)
_NUMBER_RE = re.compile(
    r"[+-]?([0-9]{1,3}(,[0-9]{3}){1,4}|[0-9]{1,15})(\.[0-9]{1,6})?"  # no overflow to inf
)


@dataclass(frozen=True)
class Row:
    """One data row: cleaned text and parsed numbers keyed by canonical column name."""

    line: int
    text: Mapping[str, str]
    numbers: Mapping[str, float]


@dataclass(frozen=True)
class Export:
    """A parsed export: its type, where it came from, its rows and its footer.

    ``warnings`` name what was kept but a user should know about, each naming the
    file: an unknown distinguished code (counted as its own level).
    """

    report: Report
    source: str
    rows: tuple[Row, ...]
    data_month: str
    as_of: date
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CacheCounts:
    """One cache's reads since the start, and how full it is (for the Cache page)."""

    hits: int
    misses: int
    size: int
    limit: int

    @property
    def hit_rate(self) -> float | None:
        """Hits over reads; None before the first read (shown as "–", not 0 %)."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else None


class RowMemo:
    """Parsed rows of one source's exports, by header, line number and line text.

    A district's export of one day differs from the day before in a few clubs;
    the rows of the unchanged lines are taken from here instead of being read
    again (rows are immutable, so sharing them is safe). Bounded: when full it
    starts afresh. Thread-safe: one dict operation per lookup.
    """

    def __init__(self, maxsize: int = 20_000) -> None:
        self._rows: dict[tuple[tuple[str, ...], int, str], Row] = {}
        self._maxsize = maxsize
        self._counts_lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self.trace = ReadTrace()

    def get(self, key: tuple[tuple[str, ...], int, str]) -> Row | None:
        self.trace.read(key)
        return self._rows.get(key)

    def put(self, key: tuple[tuple[str, ...], int, str], row: Row) -> None:
        if len(self._rows) >= self._maxsize:
            self._rows.clear()
        self._rows[key] = row

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()
        self.trace.add("c", None)

    def count(self, *, hits: int, misses: int) -> None:
        """Add one export's reused and newly read rows (once per export, not per row)."""
        with self._counts_lock:
            self._hits += hits
            self._misses += misses

    def stats(self) -> CacheCounts:
        """Rows reused (hits) and read afresh (misses) since the start, size and limit."""
        with self._counts_lock:
            hits, misses = self._hits, self._misses
        return CacheCounts(hits=hits, misses=misses, size=len(self._rows), limit=self._maxsize)


def parse_export(
    text: str,
    source: str,
    *,
    memo: RowMemo | None = None,
    requested: str | None = None,
    rows_for: str | None = None,
    max_bytes: int = DEFAULT_MAX_EXPORT_BYTES,
) -> Export:
    """Parse one CSV export; ``source`` (path or URL) is named in every error.

    ``requested`` is the month (``YYYY-MM``) the export was asked for: when the
    footer names that month, it is the data month, whatever the as-of date's year.
    With ``rows_for`` (the requested month, so it implies ``requested``), the rows of
    an export whose footer names another month are checked for their layout but not
    read: its ``rows`` are empty (a check of the month needs no figures of another).
    With a ``memo``, rows of lines seen before (same header, line and text) are reused.
    A text longer than ``max_bytes`` characters (its size in bytes for the ASCII the
    dashboard writes; setting ``source.max_export_bytes``) is refused unread.
    A malformed ``requested`` or ``rows_for`` raises ConfigError (a caller's error).
    """
    if len(text) > max_bytes:
        raise ParseError(
            source,
            f"export of {len(text):,} characters is over the cap of {max_bytes:,} "
            "(setting source.max_export_bytes)",
        )
    requested = requested if requested is not None else rows_for
    if requested is not None:
        validate_month(requested)
    records = _records(text, source, raw=memo is not None)
    header_line, header, _ = next(records, (0, [], None))
    if not header:
        raise ParseError(source, "empty file: no header row", line=max(header_line, 1))
    report, plan = _detect(header, source, header_line)
    last = _last_line_footer(text, requested) if rows_for is not None else None
    if last is not None and last[0] != rows_for:
        _check_layout(records, header, source)
        return Export(report, source, (), *last)
    rows, footer = _read_rows(records, header, plan, source, memo=memo, requested=requested)
    return Export(report, source, rows, *footer, _check_rows(rows, report, source))


def _read_rows(
    records: Iterator[tuple[int, list[str], str | None]],
    header: list[str],
    plan: tuple[_Step, ...],
    source: str,
    *,
    memo: RowMemo | None,
    requested: str | None,
) -> tuple[tuple[Row, ...], tuple[str, date]]:
    """The data rows after the header, and the footer's data month and as-of date."""
    known = tuple(header)
    rows: list[Row] = []
    footer: tuple[str, date] | None = None
    line = 0
    read = 0  # rows read afresh: counted on the slow path only, hits are the rest
    for line, cells, raw in records:
        if footer is not None:
            raise ParseError(source, "unexpected content after the footer line", line=line)
        key = (known, line, raw) if raw is not None else None
        if key is not None and memo is not None and (row := memo.get(key)) is not None:
            rows.append(row)
        elif _is_footer(cells):
            footer = _footer(cells, source, line, requested)
        else:
            rows.append(row := _row(cells, line, header, plan, source))
            if key is not None and memo is not None:
                memo.put(key, row)
                read += 1
    if memo is not None:
        memo.count(hits=len(rows) - read, misses=read)
    if footer is None:
        raise ParseError(source, "no footer line 'Month of <month>, As of MM/DD/YYYY'", line=line)
    return tuple(rows), footer


def _check_rows(rows: tuple[Row, ...], report: Report, source: str) -> tuple[str, ...]:
    """Refuse a club (or district) listed twice; warn of unknown distinguished codes.

    Two passes over the rows' text, no conversion: about 15 us for 200 clubs.
    """
    key = _KEYS[report]
    names = [row.text[key] for row in rows]
    if len(set(names)) != len(names):
        _refuse_repeated(rows, key, source)
    level = _LEVEL_COLUMNS.get(report)
    if level is None:
        return ()
    other = {row.text[level] for row in rows} - _KNOWN_LEVELS
    return _level_warnings(rows, level, other, source) if other else ()


def _refuse_repeated(rows: tuple[Row, ...], key: str, source: str) -> None:
    first: dict[str, int] = {}
    for row in rows:
        name = row.text[key]
        if name in first:
            raise ParseError(
                source,
                f"{key} {name!r} is listed again (first at line {first[name]})",
                line=row.line,
                column=key,
            )
        first[name] = row.line


def _level_warnings(
    rows: tuple[Row, ...], level: str, codes: set[str], source: str
) -> tuple[str, ...]:
    """One warning per unknown distinguished code: file, code, clubs and first line."""
    found = [row for row in rows if row.text[level] in codes]
    warnings = []
    for code in sorted(codes):
        lines = [row.line for row in found if row.text[level] == code]
        warnings.append(
            f"{source}: unknown distinguished status {code!r} on {len(lines)} club(s) "
            f"from line {lines[0]}; kept and counted as {other_level_metric(code)}"
        )
    return tuple(warnings)


def other_level_metric(code: str) -> str:
    """The metric counting clubs of an unknown distinguished code: ``H`` ->
    ``distinguished_level_h_clubs``."""
    return f"{OTHER_LEVEL_PREFIX}{code.lower()}_clubs"


def _check_layout(
    records: Iterator[tuple[int, list[str], str | None]], header: list[str], source: str
) -> None:
    """The checks of a full parse except the cells' values: every row as wide as the
    header, one footer, nothing after it."""
    footer = False
    for line, cells, _ in records:
        if footer:
            raise ParseError(source, "unexpected content after the footer line", line=line)
        if _is_footer(cells):
            footer = True
        elif len(cells) != len(header):
            _check_width(cells, line, header, source)


def _last_line_footer(text: str, requested: str | None) -> tuple[str, date] | None:
    """The footer's data month and as-of date if the last line is a valid footer, else
    None (then the full parse finds the footer or reports what is wrong)."""
    body = text.rstrip()
    last = body[body.rfind("\n") + 1 :]
    try:
        cells = next(csv.reader([last]))
        if "".join(cells).strip() and _is_footer(cells):
            return _footer(cells, "", 0, requested)
        return None
    except (csv.Error, StopIteration, ParseError):
        return None


# Byte order marks, UTF-32 before UTF-16: the UTF-32-LE mark starts with UTF-16-LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_export(data: bytes) -> str:
    """Text of an export file: UTF-16 or UTF-32 with a byte order mark (a spreadsheet's
    "Unicode text"), UTF-16 without one (NUL bytes beside ASCII), UTF-8 with or
    without BOM, else Windows-1252. Never raises: what cannot be decoded becomes
    U+FFFD and the parser names the cell."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    head = data[:64]
    if b"\x00" in head:  # UTF-16 without BOM: the ASCII text's other byte is NUL
        odd = head[1::2].count(0) > head[0::2].count(0)
        return data.decode("utf-16-le" if odd else "utf-16-be", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _records(
    text: str, source: str, *, raw: bool = False
) -> Iterator[tuple[int, list[str], str | None]]:
    """Non-blank CSV records with the file line each one starts on.

    With ``raw``, also the text of a record that is one whole line (else None).
    """
    lines = io.StringIO(text.removeprefix("\ufeff"), newline="")
    tap = _Tap(lines) if raw else None
    reader = csv.reader(tap or lines)
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ParseError(source, f"unreadable CSV: {exc}", line=reader.line_num) from exc
        # The first cell settles most records without joining the rest.
        if (cells and cells[0].strip()) or "".join(cells).strip():
            whole = tap.last if tap is not None and reader.line_num == line else None
            yield line, cells, whole
        line = reader.line_num + 1


class _Tap:
    """The lines of a file for ``csv.reader``, keeping the last one handed out."""

    __slots__ = ("_lines", "last")

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.last = ""

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> str:
        self.last = next(self._lines)
        return self.last


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9%]", "", name.lower())


# How one column is read: canonical name, cell index, numeric or not, and the converter
# of its stripped cell (raising ValueError with the message for the user).
_Step = tuple[str, int, bool, Callable[[str], Any]]


def _detect(header: list[str], source: str, line: int) -> tuple[Report, tuple[_Step, ...]]:
    """Export type from the header, and how to read each known column of a row."""
    found = _layout(tuple(header))
    if found is None:
        raise ParseError(source, "unknown export: header matches no known report", line=line)
    report, plan, missing = found
    if missing is not None:
        raise ParseError(
            source, f"{report} export lacks a required column", line=line, column=missing
        )
    return report, plan


@functools.lru_cache(maxsize=64)
def _layout(header: tuple[str, ...]) -> tuple[Report, tuple[_Step, ...], str | None] | None:
    """The report a header belongs to, its reading plan and a missing required column.

    A pure function of the header, memoized: every export of a type shares its header.
    """
    keys = [_key(h) for h in header]
    for report, signature in _SIGNATURES:
        index = _index(keys, SPECS[report])
        if all(name in index for name in signature):
            missing = [c.name for c in SPECS[report] if c.required and c.name not in index]
            plan = tuple(
                (c.name, index[c.name], c.kind in (NUMBER, PERCENT), _CONVERTERS[c.kind])
                for c in SPECS[report]
                if c.name in index
            )
            return report, plan, missing[0] if missing else None
    return None


def _index(keys: list[str], columns: tuple[Column, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for column in columns:
        for name in (column.name, *column.aliases):
            if _key(name) in keys:
                index[column.name] = keys.index(_key(name))
                break
    return index


def _is_footer(cells: list[str]) -> bool:
    first = cells[0] if cells[0].strip() else next(c for c in cells if c.strip())
    return first.strip().lower().startswith("month of")


def _footer(cells: list[str], source: str, line: int, requested: str | None) -> tuple[str, date]:
    """Data month (``YYYY-MM``) and as-of date from a ``Month of X, As of M/D/Y`` line."""
    joined = ", ".join(c.strip() for c in cells if c.strip())
    m = _FOOTER_RE.fullmatch(joined)
    month = _month_number(m.group(1)) if m else None
    if m is None or month is None:
        raise ParseError(source, f"malformed footer {joined[:80]!r}", line=line)
    try:
        as_of = date(int(m.group(4)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise ParseError(source, f"invalid as-of date in footer: {exc}", line=line) from exc
    return _data_month(month, as_of, requested), as_of


def _month_number(name: str) -> int | None:
    """1-12 for a full or abbreviated (3+ letters) English month name."""
    name = name.lower()
    matches = [i for i, full in enumerate(_MONTHS, 1) if len(name) >= 3 and full.startswith(name)]
    return matches[0] if matches else None


def _data_month(month: int, as_of: date, requested: str | None) -> str:
    """The requested month if the footer names it, else the footer's month in the
    year closest to the as-of date.

    An archive download of June 2023 ends ``Month of Jun, As of 09/13/2025`` (the
    download date): requested as 2023-06 it is 2023-06. ``Month of Dec`` as of
    01/03/2026 is 2025-12; ``Month of Jan`` as of 12/31/2025 (a month whose closing
    period ended on its last day) is 2026-01.
    """
    if requested is not None and int(requested[5:7]) == month:
        return requested
    years = (as_of.year - 1, as_of.year, as_of.year + 1)
    year = min(years, key=lambda y: abs((y - as_of.year) * 12 + month - as_of.month))
    return f"{year}-{month:02d}"


def _row(
    cells: list[str],
    line: int,
    header: list[str],
    plan: tuple[_Step, ...],
    source: str,
) -> Row:
    if len(cells) != len(header):
        _check_width(cells, line, header, source)
    text: dict[str, str] = {}
    numbers: dict[str, float] = {}
    for name, i, numeric, convert in plan:
        try:
            value = convert(cells[i].strip())
        except ValueError as exc:
            raise ParseError(source, str(exc), line=line, column=name) from exc
        if numeric:
            numbers[name] = value
        else:
            text[name] = value
    return Row(line, MappingProxyType(text), MappingProxyType(numbers))


def _check_width(cells: list[str], line: int, header: list[str], source: str) -> None:
    """Too few cells, or more than the header with something in the extra ones, is an error."""
    if len(cells) < len(header):
        raise ParseError(
            source,
            f"row has {len(cells)} cells but the header has {len(header)}",
            line=line,
            column=header[len(cells)],
        )
    if any(c.strip() for c in cells[len(header) :]):
        raise ParseError(
            source, f"row has {len(cells)} cells but the header has {len(header)}", line=line
        )


def _number(value: str, *, percent: bool = False) -> float:
    """``1,234`` -> 1234.0; ``-3.5%`` -> -3.5 in percent columns; empty -> 0."""
    if not percent and value.isascii() and value.isdecimal() and len(value) <= 15:
        return float(value)  # the common case, which the pattern below accepts too
    digits = value.removesuffix("%").strip() if percent else value
    if digits == "":
        return 0.0
    if not _NUMBER_RE.fullmatch(digits):
        raise ValueError(f"expected a number, found {value[:40]!r}")
    return float(digits.replace(",", ""))


def _percent(value: str) -> float:
    return _number(value, percent=True)


def _text(value: str) -> str:
    return value


def _status(value: str) -> str:
    status = _STATUS_BY_KEY.get(value.lower())
    if status is None:
        raise ValueError(
            f"unknown club status {value[:40]!r}; expected one of {', '.join(STATUSES)}"
        )
    return status


def _level(value: str) -> str:
    """'', D, S, P or M (codes or words); another code of 1-3 letters is kept as it is."""
    code = _LEVEL_CODES.get(value)
    if code is None:
        code = _LEVEL_WORDS.get(_NOT_LETTER_RE.sub("", value.lower()))
    if code is None:
        if _OTHER_CODE_RE.fullmatch(value):
            return value.upper()
        raise ValueError(
            f"unknown distinguished status {value[:40]!r}; expected '', D, S, P, M "
            "or another code of 1-3 letters"
        )
    return code


_CONVERTERS: Mapping[str, Callable[[str], Any]] = MappingProxyType(
    {
        TEXT: _text,
        NUMBER: _number,
        PERCENT: _percent,
        STATUS: _status,
        LEVEL: _level,
        DISTRICT: normalize_district,
    }
)


# --- metrics -----------------------------------------------------------------


def club_metrics(export: Export) -> dict[str, float]:
    """District metrics from a club performance export (sums and counts over its clubs)."""
    _expect(export, Report.CLUB_PERFORMANCE)
    rows = export.rows
    membership = sum(r.numbers["Active Members"] for r in rows)
    base = sum(r.numbers["Mem. Base"] for r in rows)
    status = Counter(r.text["Club Status"] for r in rows)
    level = Counter(r.text["Club Distinguished Status"] for r in rows)
    return {
        "membership": membership,
        "membership_base": base,
        "net_growth": membership - base,
        "new_members": sum(r.numbers["New Members"] for r in rows),
        "clubs": float(len(rows)),
        "active_clubs": float(status["Active"]),
        "suspended_clubs": float(status["Suspended"]),
        "low_clubs": float(status["Low"]),
        "ineligible_clubs": float(status["Ineligible"]),
        "distinguished_clubs": float(level["D"]),
        "select_distinguished_clubs": float(level["S"]),
        "presidents_distinguished_clubs": float(level["P"]),
        "smedley_distinguished_clubs": float(level["M"]),
        "total_distinguished_clubs": float(sum(level[code] for code in LEVELS)),
        "dcp_goals": sum(r.numbers["Goals Met"] for r in rows),
        # Unknown codes: each its own level, outside the total (its rank is unknown).
        **{other_level_metric(c): float(level[c]) for c in sorted(level.keys() - _KNOWN_LEVELS)},
    }


def summary_metrics(export: Export, district: str) -> dict[str, float]:
    """Paid clubs and payments of one district from a district summary export."""
    _expect(export, Report.DISTRICT_SUMMARY)
    try:
        district = normalize_district(district)  # "02" is district 2, as in the rows
    except ValueError as exc:
        raise ParseError(export.source, str(exc), column="DISTRICT") from exc
    for row in export.rows:
        if row.text["DISTRICT"] == district:
            return {
                "paid_clubs": row.numbers["Paid Clubs"],
                "total_payments": row.numbers["Total YTD Payments"],
                "payment_base": row.numbers["Payment Base"],
            }
    raise ParseError(export.source, f"no row for district {district}", column="DISTRICT")


def summary_districts(export: Export) -> list[str]:
    """The districts listed in a district summary export, in file order."""
    _expect(export, Report.DISTRICT_SUMMARY)
    return [row.text["DISTRICT"] for row in export.rows]


def build_snapshot(district: str, club: Export, summary: Export | None) -> Snapshot:
    """One snapshot from a district's club performance and (optionally) the district summary.

    The snapshot carries the club export's warnings (the summary's rows have no level).
    """
    metrics = club_metrics(club)
    if summary is not None:
        metrics.update(summary_metrics(summary, district))
    return Snapshot(
        district, club.as_of, club.data_month, metrics, source=club.source, warnings=club.warnings
    )


def _expect(export: Export, report: Report) -> None:
    if export.report != report:
        raise ParseError(export.source, f"expected a {report} export, found {export.report}")


# --- export URLs -------------------------------------------------------------


@dataclass(frozen=True)
class ExportRequest:
    """What one export URL asks for: report, district ('' for the summary), month, date."""

    report: str
    district: str
    month: str
    collection_date: date


def report_param(report: Report, district: str, month: str, collection_date: date) -> str:
    """The ``report=`` value of the dashboard's export URL.

    ``clubperformance~42~6/30/2025~7/5/2025~2024-2025``; the district summary
    leaves the district empty: ``districtsummary~~6/30/2025~7/5/2025~2024-2025``.
    """
    name = "" if report == Report.DISTRICT_SUMMARY else district
    return "~".join(
        (report.value, name, _mdy(month_end(month)), _mdy(collection_date), program_year(month))
    )


def parse_report_param(value: str) -> ExportRequest:
    """Inverse of :func:`report_param`; a malformed value raises ParseError."""
    parts = value.split("~")
    if len(parts) != 5:
        raise ParseError("report", f"expected 5 '~'-separated parts, found {len(parts)}")
    report, district, end, collected, year = parts
    try:
        end_date, collection_date = _from_mdy(end), _from_mdy(collected)
        district = normalize_district(district) if district else ""
        month = validate_month(f"{end_date.year:04d}-{end_date.month:02d}")
    except (ValueError, ConfigError) as exc:
        raise ParseError("report", str(exc)) from exc
    if end_date != month_end(month) or year != program_year(month):
        raise ParseError("report", f"{end} is not a month end of program year {year}")
    if report in _REPORTS and (report == Report.DISTRICT_SUMMARY) == bool(district):
        raise ParseError("report", "the district summary takes no district; other reports need one")
    return ExportRequest(report, district, month, collection_date)


_MDY_RE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")


def _mdy(d: date) -> str:
    return f"{d.month}/{d.day}/{d.year}"


def _from_mdy(value: str) -> date:
    m = _MDY_RE.fullmatch(value)
    if not m:
        raise ValueError(f"expected a date M/D/YYYY, found {value[:20]!r}")
    return date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
