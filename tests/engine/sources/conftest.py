from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.sources.sim import Simulator, SimulatorServer, serve_simulator
from tests.engine.sources.common import CLOSING, MONTH


@pytest.fixture(scope="module")
def sim() -> Simulator:
    """A simulator whose :data:`MONTH` closes on :data:`CLOSING`."""
    return Simulator(seed=5, calendar={MONTH: CLOSING})


@pytest.fixture()
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    """``sim`` over HTTP: district 7's club export is broken, district 9 is missing."""
    with serve_simulator(sim, malformed={"7"}, missing={"9"}) as srv:
        yield srv
