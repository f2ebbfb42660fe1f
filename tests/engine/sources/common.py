"""What the source tests share: a month with a known closing date, and snapshot comparison."""

from __future__ import annotations

from datetime import date

from engine.domain.models import Snapshot

MONTH = "2025-03"
CLOSING = date(2025, 4, 4)
DISTRICTS = ("7", "42", "F")


def same(a: Snapshot, b: Snapshot) -> None:
    assert (a.district, a.as_of, a.data_month) == (b.district, b.as_of, b.data_month)
    assert dict(a.metrics) == dict(b.metrics)
