"""What the monitor reports over a window: its resource samples and the full report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.monitor.advice import Bottleneck, Recommendation
from engine.monitor.stats import Figure, OperationStats, ReportSummary
from engine.store.perf import ResourceSample

__all__ = ["Report", "ResourceSummary", "Resources"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSummary:
    """A window's resource samples, summed up: per figure and gauge, its average and peak."""

    source: str
    """``memory`` (this process's samples) or ``history`` (every process's, persisted)."""
    count: int
    """Samples in the window."""
    summary: dict[str, Figure]
    """By figure or gauge name (``rss_mb``, ``cpu_percent``, ``cache_hit_rate`` ...)."""

    @property
    def average_memory_mb(self) -> float | None:
        """Resident memory in MiB, averaged over the samples; None without samples."""
        return self._of("rss_mb", peak=False)

    @property
    def peak_memory_mb(self) -> float | None:
        """The highest resident memory of a sample, in MiB; None without samples."""
        return self._of("rss_mb", peak=True)

    @property
    def average_cpu_percent(self) -> float | None:
        """CPU use in percent of one core, averaged; None without samples."""
        return self._of("cpu_percent", peak=False)

    @property
    def peak_cpu_percent(self) -> float | None:
        """The highest CPU use of a sample, in percent of one core; None without samples."""
        return self._of("cpu_percent", peak=True)

    def _of(self, name: str, *, peak: bool) -> float | None:
        figure = self.summary.get(name)
        if figure is None:
            return None
        return figure.peak if peak else figure.avg


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """The resource samples of a window (seconds) and, per figure and gauge, its average
    and peak. Samples are oldest first; each carries every figure and gauge by name."""

    window_s: float
    source: str
    """``memory`` (this process's samples) or ``history`` (every process's, persisted)."""
    count: int
    samples: list[ResourceSample]
    summary: dict[str, Figure]

    @property
    def summed_up(self) -> ResourceSummary:
        """The window's summary without its samples (what a report carries)."""
        return ResourceSummary(source=self.source, count=self.count, summary=self.summary)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Summary, top operations (by total time), bottlenecks, resource summary and
    recommendations over a window of ``window_s`` seconds; durations in milliseconds."""

    window_s: float
    generated_at: datetime
    source: str
    """Where the figures came from: ``memory`` or ``history``."""
    summary: ReportSummary
    top_operations: list[OperationStats]
    bottlenecks: list[Bottleneck]
    """Most severe first."""
    resources: ResourceSummary
    recommendations: list[Recommendation]
    """Most urgent first."""
