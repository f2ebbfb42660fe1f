"""The monitor's hot path: records the duration of every timed call.

A :class:`Recorder` is the :class:`engine.instrument.Instrument` the composition
root hands to storage, sources, the cache, the reconciler and the batch runner.
It keeps the last :data:`MAX_CALLS` calls of each operation in memory; the
:class:`engine.monitor.core.Monitor` turns them into statistics and history.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from itertools import islice
from types import TracebackType
from typing import ParamSpec, TypeVar

from engine.clock import Clock, SystemClock
from engine.instrument import ORIGIN, ORIGIN_SEP

__all__ = ["MAX_CALLS", "Labels", "Record", "Recorder", "Timer"]

MAX_CALLS = 50_000
"""Calls kept in memory per operation (older ones only live on in history)."""

Labels = Mapping[str, object]
Record = tuple[float, int, str | None, Labels | None]
"""(clock.monotonic() at the end of the call, duration in ns, error type or None, labels)"""

P = ParamSpec("P")
R = TypeVar("R")


class Timer:
    """Times one call; a context manager, or a decorator timing each call separately."""

    __slots__ = ("_labels", "_operation", "_recorder", "_start")

    def __init__(self, recorder: Recorder, operation: str, labels: Labels | None) -> None:
        self._recorder = recorder
        self._operation = operation
        self._labels = labels
        self._start = 0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.perf_counter_ns() - self._start
        error = None if exc_type is None else exc_type.__name__
        self._recorder.add(self._operation, duration, error, self._labels)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        recorder, operation, labels = self._recorder, self._operation, self._labels

        @functools.wraps(fn)
        def timed_call(*args: P.args, **kwargs: P.kwargs) -> R:
            with Timer(recorder, operation, labels):
                return fn(*args, **kwargs)

        return timed_call


class _Series:
    """The recent calls of one operation; ``appended`` counts every call ever added."""

    __slots__ = ("appended", "records")

    def __init__(self) -> None:
        self.records: deque[Record] = deque(maxlen=MAX_CALLS)
        self.appended = 0


class Recorder:
    """Thread-safe store of recent calls per operation.

    Args:
        clock: places calls in time windows (durations use ``perf_counter_ns``).
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.started = self.clock.monotonic()
        self._monotonic = self.clock.monotonic  # bound once: the hot path calls it per record
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._drained: dict[str, int] = {}

    def timed(self, operation: str, **labels: object) -> Timer:
        """A timer for one call: ``with recorder.timed(op): ...`` or ``@recorder.timed(op)``.

        An exception leaving the block or function is recorded as a failure with its
        type name and propagates unchanged.
        """
        return Timer(self, operation, labels or None)

    def record(
        self,
        operation: str,
        duration_s: float,
        *,
        ok: bool = True,
        error: str | None = None,
        **labels: object,
    ) -> None:
        """Record a call timed by the caller; ``error`` (a type name) implies a failure."""
        if not ok and error is None:
            error = "error"
        self.add(operation, round(duration_s * 1e9), error, labels or None)

    def add(
        self, operation: str, duration_ns: int, error: str | None, labels: Labels | None
    ) -> None:
        origin = ORIGIN.get()  # one context-variable read: the hot path stays flat
        if origin is not None:  # a UI's own read: kept apart from the engine's figures
            operation = f"{origin}{ORIGIN_SEP}{operation}"
            labels = {**(labels or {}), "origin": origin}
        with self._lock:
            series = self._series.get(operation)
            if series is None:
                series = self._series[operation] = _Series()
            # Stamped under the lock so each series stays ordered by time.
            series.records.append((self._monotonic(), duration_ns, error, labels))
            series.appended += 1

    def calls(self) -> list[tuple[str, list[Record]]]:
        """A copy of the recent calls of every operation."""
        with self._lock:
            return [(op, list(series.records)) for op, series in self._series.items()]

    def drain(self) -> dict[str, list[Record]]:
        """The calls added since the last drain, per operation (for history)."""
        calls = {}
        with self._lock:
            for op, series in self._series.items():
                new = min(series.appended - self._drained.get(op, 0), len(series.records))
                if new > 0:
                    calls[op] = list(islice(series.records, len(series.records) - new, None))
                self._drained[op] = series.appended
        return calls
