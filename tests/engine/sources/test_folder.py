"""The folder source, against exports written by ``recon sim export``."""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from engine import settings as settings_mod
from engine.cli import sim as sim_command
from engine.cli.core import Context
from engine.domain.models import month_end
from engine.errors import ParseError, SourceError
from engine.sources.folder import FolderSource
from engine.sources.sim import (
    Simulator,
    SimulatorSource,
    export_dates,
)
from tests.engine.sources.common import CLOSING, DISTRICTS, MONTH, same


def run_export(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    sim_command.register(parser.add_subparsers())
    args = parser.parse_args(["sim", "export", *argv])
    settings = settings_mod.load(env={}, overrides={"source": {"seed": args.seed}})
    code: int = args.handler(args, Context(settings))
    return code


def test_folder_round_trip_through_the_export_command(sim: Simulator, tmp_path: Path) -> None:
    calendar = tmp_path / "calendar.json"
    calendar.write_text(json.dumps({MONTH: CLOSING.isoformat()}))
    out = tmp_path / "exports"
    argv = ["--month", MONTH, "--out", str(out), "--districts", "7,42,f", "--seed", "5"]
    assert run_export(tmp_path, *argv, "--calendar", str(calendar)) == 0
    dates = export_dates(sim, MONTH)
    assert dates[0] == month_end(MONTH) + timedelta(days=1)
    assert dates[-1] == CLOSING + timedelta(days=3)
    assert sorted(p.name for p in out.iterdir()) == [d.isoformat() for d in dates]

    folder = FolderSource(out, share_summary=True)
    memory = SimulatorSource(sim, share_summary=True)
    for day in dates:
        for district in DISTRICTS:
            same(folder.fetch(district, MONTH, day), memory.fetch(district, MONTH, day))
    # only the exported districts are listed (issue #18: a run of the folder works them all)
    assert folder.districts(MONTH, dates[0]) == ["7", "42", "F"]


def test_folder_source_missing_files(sim: Simulator, tmp_path: Path) -> None:
    day = date(2025, 4, 2)
    (tmp_path / day.isoformat()).mkdir()
    path = tmp_path / day.isoformat() / "clubperformance_42.csv"
    path.write_text(sim.club_performance_csv("42", MONTH, day), newline="")
    source = FolderSource(tmp_path, share_summary=False)

    snap = source.fetch("42", MONTH, day)
    assert "paid_clubs" not in snap.metrics and snap.metrics["clubs"] > 0
    assert source.districts(MONTH, day) == ["42"]
    with pytest.raises(SourceError) as info:
        source.fetch("7", MONTH, day)
    assert str(tmp_path / day.isoformat() / "clubperformance_7.csv") in str(info.value)
    assert not info.value.transient

    path.write_text("District,Club Number\r\n42,x\r\n")
    with pytest.raises(ParseError) as parse_info:
        source.fetch("42", MONTH, day)
    assert parse_info.value.source == str(path)
