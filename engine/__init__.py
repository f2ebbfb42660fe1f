"""Month-end reconciliation engine: the product's core (no UI code here).

Build one :class:`Console` from :class:`Settings` (``load_settings`` reads the
settings file, the environment and overrides) and share it: the dashboard, the
API and the CLI all do. See ARCHITECTURE.md for the packages behind it.
"""

from __future__ import annotations

from engine.app.console import Console
from engine.app.months import MonthStatus, month_status
from engine.cancel import CancelToken
from engine.clock import Clock, FakeClock, SystemClock
from engine.domain.models import (
    BatchStatus,
    ItemState,
    Job,
    JobStatus,
    MetricChange,
    Phase,
    Reason,
    Snapshot,
    TimelineEntry,
)
from engine.errors import (
    BatchError,
    ConfigError,
    ConflictError,
    EngineError,
    NotFoundError,
    ParseError,
    SourceError,
    StorageError,
)
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.settings import Settings
from engine.settings import load as load_settings

__all__ = [
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
]
