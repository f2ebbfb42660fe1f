"""The closing calendar: drawn from the real distribution, or read from a file."""

from __future__ import annotations

import json
import statistics
from datetime import date
from pathlib import Path

import pytest

from engine.domain.models import month_end
from engine.errors import ConfigError
from engine.sources.sim import (
    Simulator,
    export_dates,
    load_calendar,
)


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(seed=42)


def test_closing_calendar_follows_the_real_distribution(sim: Simulator) -> None:
    months = [f"{y}-{m:02d}" for y in range(2000, 2100) for m in range(1, 13)]
    days = {m: (sim.closing_end(m) - month_end(m)).days for m in months}
    june = [d for m, d in days.items() if m.endswith("-06")]
    other = [d for m, d in days.items() if not m.endswith("-06")]
    assert min(june) >= 12 and max(june) <= 29
    assert min(other) >= 0 and max(other) <= 18
    assert {17, 18} & set(other)
    assert 7 <= statistics.median(days.values()) <= 9
    assert 8.0 <= statistics.mean(days.values()) <= 10.5


def test_calendar_sets_the_closing_date(tmp_path: Path) -> None:
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps({"2025-06": "2025-07-20", "2025-12": "2026-01-02"}))
    sim = Simulator(seed=1, calendar=load_calendar(path))
    assert sim.closing_end("2025-06") == date(2025, 7, 20)
    assert sim.published_month("2025-06", date(2025, 7, 20)) == "2025-06"
    assert sim.published_month("2025-06", date(2025, 7, 21)) == "2025-07"
    assert sim.published_month("2025-12", date(2026, 1, 3)) == "2026-01"
    assert export_dates(sim, "2025-12") == [date(2026, 1, d) for d in range(1, 6)]


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ('{"2025-06": "2025-07-20", "2025-13": "2026-01-20"}', "2025-13"),
        ('{"2025-06": "20 July"}', "2025-06"),
        ('{"2025-06": 20}', "2025-06"),
        ('{"2025-06": "2025-06-20"}', "2025-06"),
        ('{"2025-06": "2025-10-20"}', "2025-06"),
        ('["2025-06"]', None),
        ("{not json", None),
    ],
)
def test_bad_calendar_file_names_file_and_key(
    tmp_path: Path, content: str, key: str | None
) -> None:
    path = tmp_path / "calendar.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_calendar(path)
    assert str(path) in str(info.value)
    if key is not None:
        assert key in str(info.value)


def test_missing_calendar_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_calendar("/nonexistent/calendar.json")
