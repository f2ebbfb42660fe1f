"""The sampler: process resources and the engine's gauges, read now or by a background thread.

Gauges the monitor knows by name: ``cache_hit_rate`` (used by the caching
rules), ``batch_queue_depth``, ``batch_running``, ``storage_pending_writes``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping

from engine.clock import Clock
from engine.errors import ConfigError
from engine.monitor.resources import RESOURCE_FIELDS
from engine.store.perf import ResourceSample

__all__ = ["MAX_SAMPLES", "Gauge", "ResourceReader", "Sampler"]

log = logging.getLogger(__name__)

MAX_SAMPLES = 10_000
"""Resource samples kept in memory (about 14 hours at one sample every 5 s)."""

Gauge = Callable[[], float | None]
"""Returns the gauge's value now; None or NaN mean 'no value yet'."""
ResourceReader = Callable[[], Mapping[str, float]]
"""Returns some of :data:`RESOURCE_FIELDS` (missing ones count as 0)."""


class Sampler:
    """Reads resources and gauges into samples; thread-safe.

    Args:
        clock: stamps samples and places them in windows.
        reader: the process's resource figures.
        process: names this process in samples (host:pid).
        keep_unsaved: also queue each sample for :meth:`take_unsaved` (history).
    """

    def __init__(
        self, *, clock: Clock, reader: ResourceReader, process: str, keep_unsaved: bool
    ) -> None:
        self._clock = clock
        self._reader = reader
        self._process = process
        self._keep_unsaved = keep_unsaved
        self._lock = threading.Lock()
        self._gauges: dict[str, Gauge] = {}
        self._samples: deque[tuple[float, ResourceSample]] = deque(maxlen=MAX_SAMPLES)
        self._unsaved: deque[ResourceSample] = deque(maxlen=MAX_SAMPLES)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register_gauge(self, name: str, fn: Gauge) -> None:
        """Sample ``fn()`` with the resources under ``name``."""
        if name in RESOURCE_FIELDS or name in ("at", "process"):
            raise ConfigError("gauge", name, "name clashes with a resource figure")
        with self._lock:
            self._gauges[name] = fn

    def sample_now(self) -> ResourceSample:
        """Read resources and gauges once, keep the sample and return it."""
        raw = self._reader()
        values = {name: float(raw.get(name, 0.0)) for name in RESOURCE_FIELDS}
        values.update(self.gauges())
        sample = ResourceSample(self._clock.now(), self._process, values)
        with self._lock:
            self._samples.append((self._clock.monotonic(), sample))
            if self._keep_unsaved:
                self._unsaved.append(sample)
        return sample

    def gauges(self, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """The gauges' values now (all, or those named); a broken gauge is logged and left out."""
        with self._lock:
            gauges = [(n, fn) for n, fn in self._gauges.items() if names is None or n in names]
        values = {}
        for name, fn in gauges:
            try:
                value = fn()
            except Exception as exc:  # a broken gauge must not stop the sampler
                log.warning("gauge %s failed: %r", name, exc)
                continue
            if value is not None and not math.isnan(value):
                values[name] = float(value)
        return values

    def window(self, window_s: float) -> list[ResourceSample]:
        """The samples kept in memory from the last ``window_s`` seconds."""
        start = self._clock.monotonic() - window_s
        with self._lock:
            return [sample for at, sample in self._samples if at > start]

    def take_unsaved(self) -> list[ResourceSample]:
        """The samples taken since the last call (for history)."""
        with self._lock:
            samples = list(self._unsaved)
            self._unsaved.clear()
        return samples

    @property
    def running(self) -> bool:
        """Whether the background thread runs."""
        return self._thread is not None

    def start(self, interval_s: float, after_sample: Callable[[], None]) -> None:
        """Sample every ``interval_s`` in a daemon thread, calling ``after_sample`` after each."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(interval_s, after_sample), name="perf-monitor", daemon=True
        )
        self._thread.start()

    def stop(self) -> bool:
        """Stop the thread; True if it was running. Idempotent."""
        self._stop.set()
        if self._thread is None:
            return False
        self._thread.join()
        self._thread = None
        return True

    def _run(self, interval_s: float, after_sample: Callable[[], None]) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.sample_now()
                after_sample()
            except Exception:  # keep sampling; the next tick may succeed
                log.exception("performance monitor tick failed")
