"""The engine's public surface is what ``engine.__all__`` names: pinned here, so a
change to it is a decision, not an accident (as httpx pins its exports)."""

from __future__ import annotations

import importlib
import pkgutil

import engine

PUBLIC = {
    "NO_INSTRUMENT",
    "BatchError",
    "BatchStatus",
    "CancelToken",
    "Clock",
    "ConfigError",
    "ConflictError",
    "Console",
    "EngineError",
    "FakeClock",
    "Instrument",
    "ItemState",
    "Job",
    "JobStatus",
    "MetricChange",
    "MonthStatus",
    "NotFoundError",
    "ParseError",
    "Phase",
    "Reason",
    "Settings",
    "Snapshot",
    "SourceError",
    "StorageError",
    "SystemClock",
    "TimelineEntry",
    "load_settings",
    "month_status",
}


def test_the_public_surface_is_pinned() -> None:
    assert set(engine.__all__) == PUBLIC
    assert all(hasattr(engine, name) for name in engine.__all__)


def test_every_module_all_names_what_it_defines() -> None:
    """``from module import *`` works for every engine module that declares ``__all__``."""
    broken = []
    for info in pkgutil.walk_packages(engine.__path__, "engine."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        missing = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
        if missing:
            broken.append(f"{info.name}: {missing}")
    assert not broken, broken
