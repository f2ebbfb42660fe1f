"""The source the settings name: the simulator, an HTTP dashboard or a folder of exports."""

from __future__ import annotations

from pathlib import Path

from engine.clock import Clock
from engine.errors import ConfigError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.settings import SourceSettings
from engine.sources.base import Source
from engine.sources.folder import FolderSource
from engine.sources.http import HttpSource
from engine.sources.sim import Simulator, SimulatorSource, load_calendar


def serves_only_today(settings: SourceSettings) -> bool:
    """Whether the source is a live dashboard (HTTP), which serves only today's exports:
    a day the watcher missed cannot be fetched later (the simulator and folders keep them)."""
    return settings.source.startswith(("http://", "https://"))


def make_source(
    settings: SourceSettings,
    *,
    share_summary: bool,
    reuse_rows: bool | None = None,
    instrument: Instrument = NO_INSTRUMENT,
    clock: Clock | None = None,
) -> Source:
    """The source ``settings.source`` names: 'sim', an http(s) URL or a folder path.

    Every source refuses exports over ``settings.max_export_bytes``.
    ``share_summary`` and ``reuse_rows``: see :class:`~engine.sources.base.ExportSource`.
    ``clock`` is the simulator's: it publishes nothing for a collection date after its today.
    """
    where = settings.source
    max_bytes = settings.max_export_bytes
    if where == "sim":
        calendar = load_calendar(settings.calendar_file) if settings.calendar_file else None
        sim = Simulator(
            seed=settings.seed,
            latency_ms=settings.latency_ms,
            failure_rate=settings.failure_rate,
            calendar=calendar,
            clock=clock,
        )
        return SimulatorSource(
            sim,
            share_summary=share_summary,
            reuse_rows=reuse_rows,
            max_bytes=max_bytes,
            instrument=instrument,
        )
    if where.startswith(("http://", "https://")):
        return HttpSource(
            where,
            timeout_s=settings.http_timeout_s,
            share_summary=share_summary,
            reuse_rows=reuse_rows,
            max_bytes=max_bytes,
            instrument=instrument,
        )
    if not Path(where).is_dir():
        raise ConfigError(
            "source",
            where,
            "no such folder; expected 'sim', an http(s) URL or a folder of CSV exports",
        )
    return FolderSource(
        where,
        share_summary=share_summary,
        reuse_rows=reuse_rows,
        max_bytes=max_bytes,
        instrument=instrument,
    )
