"""How engine parts report their timings: a small protocol with a no-op default.

Storage, sources, the cache, the reconciler and the batch runner take an
``instrument`` when they are built. The composition root passes the
performance monitor's :class:`engine.monitor.recorder.Recorder`; a part built
on its own (a test, a benchmark) times nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

__all__ = ["NO_INSTRUMENT", "Instrument"]


class Instrument(Protocol):
    """Receives the duration of each timed operation."""

    def timed(self, operation: str, **labels: object) -> AbstractContextManager[object]:
        """Time the block it guards; an exception leaving it counts as a failure."""
        ...

    def record(
        self,
        operation: str,
        duration_s: float,
        *,
        ok: bool = True,
        error: str | None = None,
        **labels: object,
    ) -> None:
        """Record a call the caller timed itself."""
        ...


class _NoInstrument:
    """Times nothing."""

    def timed(self, operation: str, **labels: object) -> AbstractContextManager[object]:
        return nullcontext()

    def record(
        self,
        operation: str,
        duration_s: float,
        *,
        ok: bool = True,
        error: str | None = None,
        **labels: object,
    ) -> None:
        return None


NO_INSTRUMENT: Instrument = _NoInstrument()
"""The default instrument: timing costs one ``nullcontext``."""
