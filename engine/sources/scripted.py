"""A source that serves snapshots given in advance, in memory.

Like httpx's ``MockTransport``, it is part of the package: tests script
closing periods with it, and it stands for sources that publish no data-month
information (``data_month=None``), which finalize by stability.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from engine.cancel import NEVER, CancelToken
from engine.domain.models import Snapshot
from engine.errors import SourceError


class ScriptedSource:
    """Serves, for a collection date, the latest scripted snapshot at or before it."""

    name = "scripted"

    def __init__(self, script: Mapping[str, Mapping[date, Snapshot]]) -> None:
        self._script = {d: dict(sorted(days.items())) for d, days in script.items()}
        self.fetches = 0

    def fetch(
        self, district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> Snapshot:
        cancel.check()
        self.fetches += 1
        days = self._script.get(district)
        if days is None:
            raise SourceError("no such district", district=district, month=month)
        known = [s for d, s in days.items() if d <= collection_date]
        if not known:
            raise SourceError(f"no data yet on {collection_date}", district=district, month=month)
        return known[-1]

    def districts(self, month: str, collection_date: date) -> list[str]:
        return sorted(self._script)
