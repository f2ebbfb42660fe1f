"""The in-process simulator as a source: its CSV exports rendered, then parsed like any other."""

from __future__ import annotations

from datetime import date
from typing import Unpack

from engine.cancel import CancelToken
from engine.sources.base import ExportSource, SourceOptions
from engine.sources.parse import Report, report_param
from engine.sources.sim.simulator import Simulator


class SimulatorSource(ExportSource):
    """The in-process simulator: renders the CSV exports and parses them."""

    name = "sim"

    def __init__(
        self,
        sim: Simulator,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(**options)
        self.sim = sim

    def _club(
        self, district: str, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        text = self.sim.club_performance_csv(district, month, collection_date, cancel)
        where = report_param(Report.CLUB_PERFORMANCE, district, month, collection_date)
        return text, f"sim:{where}"

    def _summary_export(
        self, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        text = self.sim.district_summary_csv(month, collection_date, cancel)
        return text, f"sim:{report_param(Report.DISTRICT_SUMMARY, '', month, collection_date)}"
