"""make_source: the source the settings name."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from engine.errors import ConfigError, ParseError
from engine.settings import SourceSettings
from engine.sources.base import ExportSource
from engine.sources.factory import make_source
from engine.sources.folder import FolderSource
from engine.sources.http import HttpSource
from engine.sources.sim import (
    SimulatorSource,
)


def test_make_source_chooses_by_setting(tmp_path: Path) -> None:
    calendar = tmp_path / "calendar.json"
    calendar.write_text(json.dumps({"2025-06": "2025-07-25"}))
    sim_source = make_source(
        SourceSettings(source="sim", seed=9, calendar_file=str(calendar)), share_summary=True
    )
    assert isinstance(sim_source, SimulatorSource)
    assert sim_source.sim.seed == 9
    assert sim_source.sim.closing_end("2025-06") == date(2025, 7, 25)

    http = make_source(SourceSettings(source="http://127.0.0.1:1/"), share_summary=False)
    assert isinstance(http, HttpSource) and http.name == "http://127.0.0.1:1"
    http.close()

    folder = make_source(SourceSettings(source=str(tmp_path)), share_summary=False)
    assert isinstance(folder, FolderSource) and folder.name == str(tmp_path)

    with pytest.raises(ConfigError, match="no such folder"):
        make_source(SourceSettings(source=str(tmp_path / "nope")), share_summary=False)
    with pytest.raises(ConfigError, match="calendar"):
        make_source(
            SourceSettings(source="sim", calendar_file=str(tmp_path / "missing.json")),
            share_summary=False,
        )


def test_every_source_gets_the_export_size_cap(tmp_path: Path) -> None:
    day = tmp_path / "2025-04-02"
    day.mkdir()
    (day / "clubperformance_42.csv").write_bytes(b"x" * 150_000)
    capped = SourceSettings(source=str(tmp_path), max_export_bytes=100_000)
    folder = make_source(capped, share_summary=False)
    with pytest.raises(ParseError, match="export of 150,000 bytes is over the cap of 100,000"):
        folder.fetch("42", "2025-03", date(2025, 4, 2))
    # The simulator's exports are smaller than the smallest cap: its parse gets the cap.
    sim = make_source(replace(capped, source="sim"), share_summary=False)
    http = make_source(replace(capped, source="http://127.0.0.1:1"), share_summary=False)
    try:
        for source in (sim, http):
            assert isinstance(source, ExportSource) and source._max_bytes == 100_000
    finally:
        http.close()
