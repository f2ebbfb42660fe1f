"""The :class:`Source` protocol, and :class:`ExportSource`, the base of the CSV export sources.

Sources: the simulator (:mod:`engine.sources.sim`), a folder of CSV exports
(:mod:`engine.sources.folder`), HTTP (:mod:`engine.sources.http`), and the
scripted source of tests (:mod:`engine.sources.scripted`);
:func:`engine.sources.factory.make_source` picks one from the settings.

A check of one district builds one :class:`~engine.domain.models.Snapshot` from two
exports: the district's club performance export and the district summary
(one row per district, shared by all). Every source parses real CSV text, so
the parser is exercised whichever source runs.

With ``share_summary=True`` (the optimized mode) a source keeps the parsed
district summary per (month, collection date) in a small bounded map, so one
summary fetch serves every district checked that day, and reuses the parsed
rows of export lines it has read before (:class:`~engine.sources.parse.RowMemo`: from
one day to the next most clubs' lines do not change). Otherwise (the naive
mode) each check fetches the summary again and parses every line.

Errors: a failed fetch raises :class:`~engine.errors.SourceError`
(``transient=True`` when a retry can help: timeouts, connection errors, HTTP
5xx), a day the source has no export for while it has others of the month
:class:`~engine.errors.GapError` (a gap, not a failure), a bad file
:class:`~engine.errors.ParseError` naming the file or URL, an export over
``max_bytes`` (setting ``source.max_export_bytes``) a ParseError before it is
read whole (:func:`export_too_large`).
"""

from __future__ import annotations

import functools
import logging
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Protocol, Required, TypedDict

from engine.cancel import NEVER, CancelToken
from engine.domain.models import Snapshot, validate_district, validate_month
from engine.errors import ParseError, SourceError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.readtrace import ReadTrace
from engine.settings import DEFAULT_MAX_EXPORT_BYTES
from engine.sources.parse import (
    CacheCounts,
    Export,
    RowMemo,
    build_snapshot,
    parse_export,
    summary_districts,
)

log = logging.getLogger(__name__)


class Source(Protocol):
    """A district dashboard we can read exports from."""

    name: str

    def fetch(
        self, district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> Snapshot:
        """The district's figures as published on ``collection_date`` for ``month``."""
        ...

    def districts(self, month: str, collection_date: date) -> list[str]:
        """Districts listed in the district summary."""
        ...

    def close(self) -> None:
        """Release connections; the source is not used afterwards."""
        ...


class _SummaryCache:
    """Parsed district summaries by (month, collection date): bounded, thread-safe.

    Threads asking for the same key wait for the one fetching it, so a day's
    summary is fetched once however many districts are checked at once. A
    failed fetch is not cached; the next caller tries again. The default size
    holds every collection date of a replayed closing period (June's window
    with its extensions is 35 days), so districts replayed one after another
    share them too. :meth:`start` loads in the background, so that a check's
    own export request and a missing summary's are in flight at the same time.
    """

    def __init__(self, maxsize: int = 40) -> None:
        self._entries: OrderedDict[tuple[str, date], _Entry] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._hits = 0  # under _lock
        self._misses = 0
        self.trace = ReadTrace()

    def get(
        self,
        key: tuple[str, date],
        load: Callable[[], Export | None],
        cancel: CancelToken,
        *,
        counted: bool = False,
    ) -> Export | None:
        """The summary, loaded here if no one has; ``counted``: :meth:`start` already
        counted this read (as a hit or a miss)."""
        entry = self._entry(key)
        while not entry.lock.acquire(timeout=0.05):
            cancel.check()
        try:
            hit = entry.loaded
            if not hit:
                entry.value, entry.loaded = load(), True
            return entry.value
        finally:
            entry.lock.release()
            if not counted:
                self._count(key, hit=hit)

    def _count(self, key: tuple[str, date], *, hit: bool) -> None:
        self.trace.read(key)
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def stats(self) -> CacheCounts:
        """Summary reads served from here (hits) or fetched (misses), size and limit."""
        with self._lock:
            return CacheCounts(
                hits=self._hits, misses=self._misses, size=len(self._entries), limit=self._maxsize
            )

    def start(
        self, key: tuple[str, date], load: Callable[[], Export | None], cancel: CancelToken
    ) -> None:
        """Load ``key`` in a background thread unless it is loaded or being loaded.

        The thread holds the entry's lock, so :meth:`get` waits for it; if the
        load fails (``cancel`` too is the caller's), the next ``get`` tries again.
        """
        entry = self._entry(key)
        if entry.loaded or not entry.lock.acquire(blocking=False):
            self._count(key, hit=True)  # loaded, or being loaded by another reader
            return
        if entry.loaded:  # loaded between the two checks
            entry.lock.release()
            self._count(key, hit=True)
            return
        self._count(key, hit=False)

        def run() -> None:
            try:
                entry.value, entry.loaded = load(), True
            except Exception as exc:  # the waiting get() fetches again and reports it
                log.debug("background summary load of %s failed: %s", key, exc)
            finally:
                entry.lock.release()

        threading.Thread(target=run, name="summary-load", daemon=True).start()
        cancel.check()

    def _entry(self, key: tuple[str, date]) -> _Entry:
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self.trace.add("c", None)


class _Entry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded = False
        self.value: Export | None = None


class SourceOptions(TypedDict, total=False):
    """The keywords every :class:`ExportSource` takes (documented there), so that the
    folder, HTTP and simulator sources pass them on without repeating them."""

    share_summary: Required[bool]
    reuse_rows: bool | None
    max_bytes: int
    instrument: Instrument


class ExportSource(ABC):
    """Builds snapshots from a club performance export and the district summary.

    :param share_summary: keep parsed summaries between checks (optimized mode).
    :param reuse_rows: keep parsed rows between checks (:class:`RowMemo`); None: as
        ``share_summary``.
    :param max_bytes: larger exports are refused (setting ``source.max_export_bytes``);
        subclasses check the size before reading a file or body whole.
    :param instrument: receives the parse timings.
    """

    name = ""

    def __init__(
        self,
        *,
        share_summary: bool,
        reuse_rows: bool | None = None,
        max_bytes: int = DEFAULT_MAX_EXPORT_BYTES,
        instrument: Instrument = NO_INSTRUMENT,
    ) -> None:
        self._summaries = _SummaryCache() if share_summary else None
        reuse = share_summary if reuse_rows is None else reuse_rows
        self._rows = RowMemo() if reuse else None
        self._max_bytes = max_bytes
        self._instrument = instrument

    def _parse(
        self, text: str, where: str, *, requested: str | None = None, rows_for: str | None = None
    ) -> Export:
        with self._instrument.timed("parse"):
            return parse_export(
                text,
                where,
                memo=self._rows,
                requested=requested,
                rows_for=rows_for,
                max_bytes=self._max_bytes,
            )

    def fetch(
        self, district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> Snapshot:
        district, month = validate_district(district), validate_month(month)
        cancel.check()
        if self._summaries is not None:  # in flight while the club export is fetched
            load = functools.partial(self._load_summary, month, collection_date, cancel)
            self._summaries.start((month, collection_date), load, cancel)
        # Rows of another month's export are checked but not read: nothing uses them.
        club = self._parse(*self._club(district, month, collection_date, cancel), rows_for=month)
        summary = self._summary(month, collection_date, cancel, counted=True)
        if summary is not None and _published(summary) != _published(club):
            # The dashboard rolled over between the two requests; the next try agrees.
            raise SourceError(
                f"district summary is for {summary.data_month} as of {summary.as_of} but the "
                f"club performance for {club.data_month} as of {club.as_of}",
                district=district,
                month=month,
                transient=True,
            )
        if club.data_month != month:
            return Snapshot(district, club.as_of, club.data_month, {}, source=club.source)
        return build_snapshot(district, club, summary)

    def districts(self, month: str, collection_date: date) -> list[str]:
        summary = self._summary(validate_month(month), collection_date, NEVER)
        if summary is None:
            raise SourceError(f"no district summary for {collection_date}", month=month)
        return summary_districts(summary)

    def cache_stats(self) -> dict[str, CacheCounts]:
        """The shared summaries' and rows' counters by cache name (none in naive mode)."""
        found = {}
        if self._summaries is not None:
            found["source day summaries"] = self._summaries.stats()
        if self._rows is not None:
            found["source row memo"] = self._rows.stats()
        return found

    def cache_traces(self) -> dict[str, ReadTrace]:
        """The recent reads of the caches :meth:`cache_stats` names, by the same names."""
        found = {}
        if self._summaries is not None:
            found["source day summaries"] = self._summaries.trace
        if self._rows is not None:
            found["source row memo"] = self._rows.trace
        return found

    def close(self) -> None:
        """Drop the shared summaries and rows."""
        if self._summaries is not None:
            self._summaries.clear()
        if self._rows is not None:
            self._rows.clear()

    def _summary(
        self, month: str, collection_date: date, cancel: CancelToken, *, counted: bool = False
    ) -> Export | None:
        load = functools.partial(self._load_summary, month, collection_date, cancel)
        if self._summaries is None:
            return load()
        return self._summaries.get((month, collection_date), load, cancel, counted=counted)

    def _load_summary(
        self, month: str, collection_date: date, cancel: CancelToken
    ) -> Export | None:
        found = self._summary_export(month, collection_date, cancel)
        # The requested month decides the year, as for the club export (archive downloads).
        return None if found is None else self._parse(*found, requested=month)

    @abstractmethod
    def _club(
        self, district: str, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        """The district's club performance export: its text, and where it came from."""

    @abstractmethod
    def _summary_export(
        self, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str] | None:
        """The district summary export's text and where it came from, or None when the
        source has none."""


def _published(export: Export) -> tuple[str, date]:
    return export.data_month, export.as_of


def export_too_large(where: str, size: int | None, max_bytes: int) -> ParseError:
    """The error for an export over the cap, refused before it is read whole;
    ``size`` None when only "more than the cap" is known (a body cut off while read)."""
    found = f"{size:,} bytes" if size is not None else f"more than {max_bytes:,} bytes"
    return ParseError(
        where,
        f"export of {found} is over the cap of {max_bytes:,} bytes "
        "(setting source.max_export_bytes)",
    )
