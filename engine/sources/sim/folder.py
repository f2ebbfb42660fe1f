"""The exports written to a folder, in the layout a folder source reads."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path

from engine.domain.models import month_end, normalize_district
from engine.sources.sim.simulator import Simulator


def export_dates(sim: Simulator, month: str, *, extra_days: int = 3) -> list[date]:
    """Collection dates from the day after month end to ``extra_days`` past the closing
    date, or to the simulator's today if that comes first."""
    end = month_end(month)
    last = min(sim.closing_end(month) + timedelta(days=extra_days), sim.today())
    return [end + timedelta(days=i) for i in range(1, (last - end).days + 1)]


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
        summary = sim.district_summary_csv(month, day)
        if districts:  # a folder source lists the summary's districts: only those written
            summary = summary_of(summary, districts)
        yield _write(folder / "districtsummary.csv", summary)
        for district in districts or sim.districts():
            text = sim.club_performance_csv(district, month, day)
            yield _write(folder / f"clubperformance_{district}.csv", text)


def summary_of(summary: str, districts: Sequence[str]) -> str:
    """A district summary export with only the rows of ``districts`` (and its footer)."""
    lines = summary.splitlines(keepends=True)
    header = next(csv.reader(lines[:1]))
    column = [h.strip().upper() for h in header].index("DISTRICT")
    wanted = {normalize_district(d) for d in districts}
    rows = [
        line
        for line, cells in zip(lines[1:-1], csv.reader(lines[1:-1]), strict=True)
        if normalize_district(cells[column].strip()) in wanted  # "02" is district 2
    ]
    return "".join((lines[0], *rows, lines[-1]))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path
