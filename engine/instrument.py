"""How engine parts report their timings: a small protocol with a no-op default.

Storage, sources, the cache, the reconciler and the batch runner take an
``instrument`` when they are built. The composition root passes the
performance monitor's :class:`engine.monitor.recorder.Recorder`; a part built
on its own (a test, a benchmark) times nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Protocol

__all__ = [
    "NO_INSTRUMENT",
    "ORIGIN",
    "ORIGIN_SEP",
    "Instrument",
    "current_origin",
    "origin_of",
    "reads_for",
]

ORIGIN: ContextVar[str | None] = ContextVar("recon_origin", default=None)
ORIGIN_SEP = ":"


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


@contextmanager
def reads_for(origin: str) -> Iterator[None]:
    """Mark the calls timed inside the block (this thread or task) as made for ``origin``,
    e.g. ``"dashboard"``: a user interface's own reads, told apart from the engine's work.

    The monitor records them as ``origin:operation`` with an ``origin`` label, so
    that they have figures (and history) of their own and stay out of the engine's.
    """
    token = ORIGIN.set(origin)
    try:
        yield
    finally:
        ORIGIN.reset(token)


def current_origin() -> str | None:
    """The origin set by the innermost :func:`reads_for`, or None (the engine's own work)."""
    return ORIGIN.get()


def origin_of(operation: str) -> str | None:
    """The origin an operation's name carries (``dashboard:cache.get`` -> ``dashboard``)."""
    head, sep, _ = operation.partition(ORIGIN_SEP)
    return head if sep else None
