"""Injected time. Production code takes a :class:`Clock`; tests pass a :class:`FakeClock`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from engine.errors import ConfigError

TODAY_VARIABLE = "RECON_TODAY"
"""Environment variable that sets the date the engine takes for today (demos, audits, tests)."""


def as_utc(value: datetime) -> datetime:
    """A stored datetime as UTC: SQLite returns them without their offset, and
    every datetime the engine stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Clock(Protocol):
    """Wall time for records and monotonic time for durations and expiry."""

    def now(self) -> datetime:
        """Current UTC time (timezone-aware)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait; a fake clock advances instead."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def today(self) -> date:
        return self.now().date()


class ShiftedClock(SystemClock):
    """The real clock moved by whole days: the date is ``today`` when it is made.

    Time flows as usual from there (the date changes at midnight UTC); only
    :meth:`now` moves, durations and waits are the real ones.
    """

    def __init__(self, today: date) -> None:
        self._shift = timedelta(days=(today - datetime.now(UTC).date()).days)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._shift


def clock_from_env(env: Mapping[str, str] | None = None) -> SystemClock:
    """The real clock, or with ``RECON_TODAY=YYYY-MM-DD`` one whose today is that date."""
    value = (os.environ if env is None else env).get(TODAY_VARIABLE, "").strip()
    if not value:
        return SystemClock()
    try:
        return ShiftedClock(date.fromisoformat(value))
    except ValueError as exc:
        raise ConfigError(TODAY_VARIABLE, value, "expected a date YYYY-MM-DD") from exc


class FakeClock:
    """A clock that only moves when told to. ``sleep`` advances it at once."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2025, 7, 1, tzinfo=UTC)
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def today(self) -> date:
        return self.now().date()
