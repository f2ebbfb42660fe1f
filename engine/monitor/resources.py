"""Process resources read with psutil, for the performance monitor's sampler.

A resource reader is any callable returning a mapping with some of
:data:`RESOURCE_FIELDS`; the monitor calls it once per sample. Tests inject
their own; production uses :class:`ProcessReader`.
"""

from __future__ import annotations

import threading

import psutil

RESOURCE_FIELDS = (
    "rss_mb",
    "cpu_percent",
    "threads",
    "open_files",
    "system_memory_percent",
    "disk_read_bytes",
    "disk_write_bytes",
)
"""Figures of one sample. Disk bytes are those read/written since the previous sample."""

_MB = 1024 * 1024


class ProcessReader:
    """Reads this process's figures with psutil.

    CPU percent is the process's CPU use since the previous read (psutil's
    ``cpu_percent(interval=None)``; above 100 when more than one core is busy),
    not cumulative CPU seconds. Disk bytes come from the process's I/O
    counters where the platform has them, else from the whole system's disks.
    """

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)
        # The first cpu_percent call only starts the measurement; it always returns 0.0.
        self._process.cpu_percent(interval=None)
        self._lock = threading.Lock()
        self._last_io = self._io_bytes()

    def __call__(self) -> dict[str, float]:
        with self._lock:
            read, write = self._io_bytes()
            disk = (max(0, read - self._last_io[0]), max(0, write - self._last_io[1]))
            self._last_io = (read, write)
            with self._process.oneshot():
                return {
                    "rss_mb": self._process.memory_info().rss / _MB,
                    "cpu_percent": self._process.cpu_percent(interval=None),
                    "threads": float(self._process.num_threads()),
                    "open_files": float(self._open_files()),
                    "system_memory_percent": psutil.virtual_memory().percent,
                    "disk_read_bytes": float(disk[0]),
                    "disk_write_bytes": float(disk[1]),
                }

    def _open_files(self) -> int:
        try:
            return len(self._process.open_files())
        except psutil.Error:  # some platforms deny listing another owner's files
            return 0

    def _io_bytes(self) -> tuple[int, int]:
        try:
            counters = self._process.io_counters()
            return counters.read_bytes, counters.write_bytes
        except (AttributeError, psutil.Error):  # macOS has no per-process I/O counters
            system = psutil.disk_io_counters()
            return (system.read_bytes, system.write_bytes) if system else (0, 0)
