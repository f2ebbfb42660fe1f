from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import settings as settings_mod
from engine.cancel import NEVER, CancelToken
from engine.cli import sim as sim_command
from engine.cli.core import Context
from engine.domain.models import ALL_METRICS, Snapshot, month_end, next_month
from engine.errors import ConfigError, ItemCancelled, ParseError, SourceError
from engine.settings import SourceSettings
from engine.sources.base import _SummaryCache
from engine.sources.factory import make_source
from engine.sources.folder import FolderSource
from engine.sources.http import HttpSource
from engine.sources.sim import (
    Simulator,
    SimulatorServer,
    SimulatorSource,
    export_dates,
    serve_simulator,
)

MONTH = "2025-03"
CLOSING = date(2025, 4, 4)
DISTRICTS = ("7", "42", "F")


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(seed=5, calendar={MONTH: CLOSING})


@pytest.fixture()
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with serve_simulator(sim, malformed={"7"}, missing={"9"}) as srv:
        yield srv


def same(a: Snapshot, b: Snapshot) -> None:
    assert (a.district, a.as_of, a.data_month) == (b.district, b.as_of, b.data_month)
    assert dict(a.metrics) == dict(b.metrics)


def test_simulator_source_builds_full_snapshots(sim: Simulator) -> None:
    source = SimulatorSource(sim, share_summary=False)
    snap = source.fetch("42", MONTH, date(2025, 4, 2))
    assert (snap.district, snap.as_of, snap.data_month) == ("42", date(2025, 4, 1), MONTH)
    assert set(snap.metrics) == set(ALL_METRICS)
    assert (
        snap.metrics["net_growth"] == snap.metrics["membership"] - snap.metrics["membership_base"]
    )
    later = source.fetch("42", MONTH, CLOSING + timedelta(days=1))
    assert (later.data_month, later.as_of, later.metrics) == (next_month(MONTH), CLOSING, {})
    assert source.fetch("42", next_month(MONTH), CLOSING + timedelta(days=1)).metrics
    assert source.districts(MONTH, date(2025, 4, 2)) == sim.districts()


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
    assert folder.districts(MONTH, dates[0]) == sim.districts()


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


def test_http_source_matches_the_in_process_simulator(
    sim: Simulator, server: SimulatorServer
) -> None:
    http = HttpSource(server.url, timeout_s=10, share_summary=True)
    memory = SimulatorSource(sim, share_summary=False)
    try:
        for day in (date(2025, 4, 1), CLOSING, CLOSING + timedelta(days=1)):
            for district in ("42", "F"):
                snap = http.fetch(district, MONTH, day)
                same(snap, memory.fetch(district, MONTH, day))
                assert snap.source.startswith(f"{server.url}/export.aspx?type=CSV&report=")
        assert http.districts(MONTH, CLOSING) == sim.districts()
    finally:
        http.close()


def test_http_errors_are_classified(server: SimulatorServer) -> None:
    http = HttpSource(server.url, timeout_s=10, share_summary=False)
    day = date(2025, 4, 2)
    try:
        with pytest.raises(SourceError) as missing:
            http.fetch("9", MONTH, day)
        assert not missing.value.transient and "HTTP 404" in str(missing.value)
        with pytest.raises(SourceError) as unknown:
            http.fetch("131", MONTH, day)
        assert not unknown.value.transient
        with pytest.raises(ParseError) as broken:
            http.fetch("7", MONTH, day)
        assert broken.value.source.startswith(server.url)
        assert "clubperformance~7~" in broken.value.source.replace("%7E", "~")
        assert broken.value.line is not None
    finally:
        http.close()


def test_transient_faults_500_reset_and_hang(sim: Simulator) -> None:
    with serve_simulator(sim, failure_rate=1.0, hang_s=30) as failing:
        http = HttpSource(failing.url, timeout_s=0.5, share_summary=False)
        messages = []
        try:
            for _ in range(3):
                with pytest.raises(SourceError) as info:
                    http.fetch("42", MONTH, date(2025, 4, 2))
                assert info.value.transient
                messages.append(str(info.value))
        finally:
            http.close()
    assert "HTTP 500" in messages[0]
    assert "connection failed" in messages[1]
    assert "timed out" in messages[2]


def test_half_the_requests_fail_when_asked(sim: Simulator) -> None:
    with serve_simulator(sim, failure_rate=0.5) as flaky:
        http = HttpSource(flaky.url, timeout_s=10, share_summary=False)
        try:
            outcomes = []
            for _ in range(4):
                try:
                    http.districts(MONTH, date(2025, 4, 2))
                    outcomes.append("ok")
                except SourceError as exc:
                    outcomes.append("transient" if exc.transient else "permanent")
        finally:
            http.close()
    assert outcomes == ["ok", "transient", "ok", "transient"]


@pytest.mark.parametrize(("share", "expected"), [(True, 1), (False, 6)])
def test_shared_summary_is_fetched_once_per_day(
    server: SimulatorServer, share: bool, expected: int
) -> None:
    http = HttpSource(server.url, timeout_s=10, share_summary=share)
    day = date(2025, 4, 3)
    errors: list[BaseException] = []

    def check(district: str) -> None:
        try:
            http.fetch(district, MONTH, day)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [
            threading.Thread(target=check, args=(d,)) for d in ("1", "2", "3", "4", "F", "U")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert server.requests("districtsummary") == expected
        assert server.requests("clubperformance") == 6
        http.fetch("42", MONTH, day + timedelta(days=1))
        assert server.requests("districtsummary") == expected + 1
    finally:
        http.close()


def test_cancel_stops_a_latency_wait() -> None:
    source = SimulatorSource(Simulator(seed=1, latency_ms=600_000), share_summary=False)
    token = CancelToken()
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            source.fetch("42", MONTH, date(2025, 4, 2), token)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=fetch)
    worker.start()
    token.cancel("user cancelled")
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ItemCancelled)


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


def test_a_summary_started_in_the_background_is_loaded_once_and_awaited() -> None:
    cache = _SummaryCache()
    release = threading.Event()
    loads: list[str] = []
    export = object()

    def load() -> Any:
        loads.append(threading.current_thread().name)
        release.wait(10)
        return export

    key = (MONTH, date(2025, 4, 1))
    cache.start(key, load, NEVER)
    cache.start(key, load, NEVER)  # already loading: no second load
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(cache.get(key, load, NEVER)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # waits for the background load
    release.set()
    waiter.join(10)
    assert got == [export] and loads == ["summary-load"]
    cache.start(key, load, NEVER)  # loaded: nothing to do
    assert cache.get(key, load, NEVER) is export and len(loads) == 1


def test_a_failed_background_load_is_fetched_again_by_the_caller() -> None:
    cache = _SummaryCache()
    calls: list[str] = []

    def load() -> Any:
        calls.append(threading.current_thread().name)
        raise SourceError("HTTP 503", transient=True)

    key = (MONTH, date(2025, 4, 1))
    cache.start(key, load, NEVER)
    with pytest.raises(SourceError, match="503"):
        cache.get(key, load, NEVER)
    assert calls == ["summary-load", threading.current_thread().name]


def test_seeded_failures_are_the_same_however_requests_interleave() -> None:
    def outcomes() -> list[str]:
        sim = Simulator(seed=3, failure_rate=0.3, latency_ms=2)  # the two requests overlap
        source = SimulatorSource(sim, share_summary=True)
        seen = []
        for day in range(2, 12):  # each fetch loads the day's summary in a background thread
            for district in ("7", "42", "F"):
                try:
                    source.fetch(district, MONTH, date(2025, 4, day))
                    seen.append("ok")
                except SourceError:
                    seen.append("failed")
        return seen

    runs = [outcomes() for _ in range(5)]
    assert all(run == runs[0] for run in runs)
    assert 0 < runs[0].count("failed") < len(runs[0])
