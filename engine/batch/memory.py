"""The memory gate: while resident memory is above a batch's threshold, none of its
items start. Nothing is cleared to free memory (caches are shared with others)."""

from __future__ import annotations

from collections.abc import Callable

import psutil

from engine.clock import Clock
from engine.settings import BatchSettings

MemoryReader = Callable[[], float]


def process_memory_reader() -> MemoryReader:
    """A reader of this process's resident memory in MB."""
    process = psutil.Process()
    return lambda: process.memory_info().rss / 2**20


class MemoryGate:
    """The last memory reading, refreshed every ``poll_s`` (at every tick while throttled).

    Not thread-safe: the runner's dispatcher alone refreshes it.
    """

    def __init__(self, reader: MemoryReader, *, clock: Clock, poll_s: float) -> None:
        self._reader = reader
        self._clock = clock
        self._poll_s = poll_s
        self.mb = reader()
        self._read_at = clock.monotonic()

    def refresh(self, *, throttling: bool) -> None:
        """Read memory again if a batch waits for it to fall, or the last reading is old."""
        if throttling or self._clock.monotonic() - self._read_at >= self._poll_s:
            self.mb = self._reader()
            self._read_at = self._clock.monotonic()

    def over(self, settings: BatchSettings) -> bool:
        """Items of a batch with ``settings`` must wait."""
        return settings.enable_resource_throttling and self.mb > settings.memory_threshold_mb


__all__ = ["MemoryGate", "MemoryReader", "process_memory_reader"]
