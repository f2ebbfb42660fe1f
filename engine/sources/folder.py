"""A folder of CSV exports as a source (``recon sim export`` writes one)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from engine.cancel import CancelToken
from engine.errors import SourceError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.sources.base import ExportSource
from engine.sources.parse import decode_export


class FolderSource(ExportSource):
    """A folder of CSV exports, one sub-folder per collection date.

    ``<path>/<YYYY-MM-DD>/clubperformance_<district>.csv`` for each district and
    ``<path>/<YYYY-MM-DD>/districtsummary.csv`` (optional: without it snapshots
    lack the summary metrics). ``recon sim export`` writes this layout.
    """

    def __init__(
        self, path: str | Path, *, share_summary: bool, instrument: Instrument = NO_INSTRUMENT
    ) -> None:
        super().__init__(share_summary=share_summary, instrument=instrument)
        self.path = Path(path)
        self.name = str(self.path)

    def districts(self, month: str, collection_date: date) -> list[str]:
        """From the summary, else from the club files of that date."""
        if (self._folder(collection_date) / "districtsummary.csv").exists():
            return super().districts(month, collection_date)
        files = sorted(self._folder(collection_date).glob("clubperformance_*.csv"))
        return [f.stem.removeprefix("clubperformance_") for f in files]

    def _folder(self, collection_date: date) -> Path:
        return self.path / collection_date.isoformat()

    def _club(
        self, district: str, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        path = self._folder(collection_date) / f"clubperformance_{district}.csv"
        if not path.is_file():
            raise SourceError(f"no export {path}", district=district, month=month)
        return self._read(path, district, month), str(path)

    def _summary_export(
        self, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str] | None:
        path = self._folder(collection_date) / "districtsummary.csv"
        if not path.is_file():
            return None
        return self._read(path, None, month), str(path)

    @staticmethod
    def _read(path: Path, district: str | None, month: str) -> str:
        try:
            return decode_export(path.read_bytes())
        except OSError as exc:
            raise SourceError(
                f"cannot read {path}: {exc.strerror}",
                district=district,
                month=month,
                transient=True,
            ) from exc
