"""The simulator as a source."""

from __future__ import annotations

import threading
from datetime import date, timedelta

from engine.cancel import CancelToken
from engine.domain.models import ALL_METRICS, next_month
from engine.errors import ItemCancelled, SourceError
from engine.sources.sim import (
    Simulator,
    SimulatorSource,
)
from tests.engine.sources.common import CLOSING, MONTH


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
