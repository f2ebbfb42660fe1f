"""A deterministic simulator of the district dashboard and its CSV exports.

Everything derives from the seed, and each district, month and closing
calendar entry draws from its own ``random.Random(f"{seed}:...")``, so the
exports are the same whatever the order of the calls or the threads making them.

Modules, by reason to change:

- :mod:`~engine.sources.sim.model`: the districts, their clubs' course over the
  program year and the late revisions of a month (DCP rules in
  :func:`distinguished_level`).
- :mod:`~engine.sources.sim.calendar`: the closing calendar, drawn from the
  real distribution unless a calendar file gives it (:func:`load_calendar`).
- :mod:`~engine.sources.sim.render`: the CSV exports as the dashboard writes them.
- :mod:`~engine.sources.sim.simulator`: :class:`Simulator`, which publishes a
  month's figures as exports with injected latency and failures.
- :mod:`~engine.sources.sim.folder`: the exports written to a folder
  (:func:`export_folder`); :mod:`~engine.sources.sim.server`: served over HTTP
  on a loopback address (:func:`serve_simulator`), with fault modes.
- :mod:`~engine.sources.sim.source`: :class:`SimulatorSource`, the simulator
  as a :class:`~engine.sources.base.Source`.
"""

from __future__ import annotations

from engine.sources.sim.calendar import load_calendar
from engine.sources.sim.folder import export_dates, export_folder
from engine.sources.sim.model import DISTRICTS, Club, ClubState, Revision, distinguished_level
from engine.sources.sim.render import (
    CLUB_PERFORMANCE_HEADER,
    DISTRICT_PERFORMANCE_HEADER,
    DISTRICT_SUMMARY_HEADER,
)
from engine.sources.sim.server import SimulatorServer, serve_simulator
from engine.sources.sim.simulator import Simulator
from engine.sources.sim.source import SimulatorSource

__all__ = [
    "CLUB_PERFORMANCE_HEADER",
    "DISTRICTS",
    "DISTRICT_PERFORMANCE_HEADER",
    "DISTRICT_SUMMARY_HEADER",
    "Club",
    "ClubState",
    "Revision",
    "Simulator",
    "SimulatorServer",
    "SimulatorSource",
    "distinguished_level",
    "export_dates",
    "export_folder",
    "load_calendar",
    "serve_simulator",
]
