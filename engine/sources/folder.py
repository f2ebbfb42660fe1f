"""A folder of CSV exports as a source (``recon sim export`` writes one)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Unpack

from engine.cancel import CancelToken
from engine.domain.models import month_end, normalize_district, validate_month
from engine.errors import GapError, SourceError
from engine.sources.base import ExportSource, SourceOptions, export_too_large
from engine.sources.parse import decode_export

SUMMARY = "districtsummary.csv"
_CLUB_PREFIX, _CLUB_SUFFIX = "clubperformance_", ".csv"
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class FolderSource(ExportSource):
    """A folder of CSV exports, one sub-folder per collection date.

    ``<path>/<YYYY-MM-DD>/clubperformance_<district>.csv`` for each district and
    ``<path>/<YYYY-MM-DD>/districtsummary.csv`` (optional: without it snapshots
    lack the summary metrics). ``recon sim export`` writes this layout. A file
    name's district is read like any other (``clubperformance_02.csv`` is
    district 2).

    A collector misses days: a day without the district's export, when the
    folder has the district's exports for the month on other days, is a
    :class:`~engine.errors.GapError`. A folder with none for the month is a
    SourceError. The month's collection dates run from the day after its end to
    the end of the next month (a closing period never runs longer).

    Files are named in errors and snapshots relative to the folder
    (``2026-07-01/clubperformance_21.csv``): errors are served to users who need
    not see local paths. A link to a file outside the folder is refused.
    """

    def __init__(
        self,
        path: str | Path,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(**options)
        self.path = Path(path)
        self.name = str(self.path)
        self._root = self.path.resolve()

    def districts(self, month: str, collection_date: date) -> list[str]:
        """From that day's summary, else from the club files of the month's days."""
        month = validate_month(month)
        if (self._folder(collection_date) / SUMMARY).is_file():
            return super().districts(month, collection_date)
        found: set[str] = set()
        for folder in self._month_folders(month):
            found.update(self._club_files(folder))
        if not found:
            raise self._no_month(month)
        return sorted(found, key=_district_order)

    def _folder(self, collection_date: date) -> Path:
        return self.path / collection_date.isoformat()

    def _club(
        self, district: str, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        path = self._club_path(self._folder(collection_date), district)
        if path is None:
            raise self._missing(district, month, collection_date)
        return self._read(path, district, month)

    def _summary_export(
        self, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str] | None:
        path = self._folder(collection_date) / SUMMARY
        if not path.is_file():
            return None
        return self._read(path, None, month)

    def _club_path(self, folder: Path, district: str) -> Path | None:
        """The district's export in ``folder``: its plain name, else any spelling of its id."""
        path = folder / f"{_CLUB_PREFIX}{district}{_CLUB_SUFFIX}"
        if path.is_file():
            return path
        return self._club_files(folder).get(district) if folder.is_dir() else None

    def _club_files(self, folder: Path) -> dict[str, Path]:
        """The club exports in ``folder`` by normalized district id."""
        files: dict[str, Path] = {}
        for path in sorted(folder.glob(f"{_CLUB_PREFIX}*{_CLUB_SUFFIX}")):
            stem = path.name.removeprefix(_CLUB_PREFIX).removesuffix(_CLUB_SUFFIX)
            try:
                district = normalize_district(stem)
            except ValueError:
                continue  # not a district's export (a backup copy, notes)
            if district in files:
                raise SourceError(
                    f"two exports of one district: {self._relative(files[district])} and "
                    f"{self._relative(path)}",
                    district=district,
                )
            files[district] = path
        return files

    def _month_folders(self, month: str) -> list[Path]:
        """The date folders of ``month``'s collection dates, in date order."""
        first = month_end(month) + timedelta(days=1)
        last = month_end(first.strftime("%Y-%m"))
        if not self.path.is_dir():
            return []
        found = [(day, p) for p in self.path.iterdir() if (day := _date_of(p.name)) is not None]
        return [p for day, p in sorted(found) if first <= day <= last and p.is_dir()]

    def _missing(self, district: str, month: str, collection_date: date) -> SourceError:
        """A gap when the district has exports of the month on other days, else an error."""
        folders = self._month_folders(month)
        if not folders:
            return self._no_month(month)
        name = f"{collection_date.isoformat()}/{_CLUB_PREFIX}{district}{_CLUB_SUFFIX}"
        if any(self._club_path(f, district) for f in folders):
            return GapError(f"no export {name}: a missed day", district=district, month=month)
        return SourceError(
            f"no export {name}, nor on any other of the month's {len(folders)} collection "
            f"dates in source folder {self._root.name!r}",
            district=district,
            month=month,
        )

    def _no_month(self, month: str) -> SourceError:
        first = month_end(month) + timedelta(days=1)
        return SourceError(
            f"no exports for {month} in source folder {self._root.name!r}: expected "
            f"sub-folders of collection dates from {first} to the end of that month",
            month=month,
        )

    def _read(self, path: Path, district: str | None, month: str) -> tuple[str, str]:
        """The file's text and its name relative to the folder; refused when it links out
        of the folder or is over the size cap (checked before it is read)."""
        where = self._relative(path)
        resolved = path.resolve()
        if not resolved.is_relative_to(self._root):
            raise SourceError(
                f"refused {where}: it links to a file outside the source folder",
                district=district,
                month=month,
            )
        try:
            size = resolved.stat().st_size
            if size > self._max_bytes:
                raise export_too_large(where, size, self._max_bytes)
            with resolved.open("rb") as file:
                data = file.read(self._max_bytes + 1)  # the file may grow after stat()
        except OSError as exc:
            raise SourceError(
                f"cannot read {where}: {exc.strerror}",
                district=district,
                month=month,
                transient=True,
            ) from exc
        if len(data) > self._max_bytes:
            raise export_too_large(where, None, self._max_bytes)
        return decode_export(data), where

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()


def _date_of(name: str) -> date | None:
    """The collection date a sub-folder is named after, if it is named after one."""
    if not _DATE_RE.fullmatch(name):
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:  # 2026-13-01
        return None


def _district_order(district: str) -> tuple[int, int, str]:
    """Numbered districts by number, then lettered ones."""
    return (0, int(district), "") if district.isdigit() else (1, 0, district)
