"""The performance monitor's history: per-interval aggregates and resource samples.

:class:`PerfStore` is what :mod:`engine.monitor` needs from a database;
:class:`SqlPerfStore` implements it on the engine's storage (tables
``perf_aggregates`` and ``perf_resources``). Every process that shares the
database writes its own rows and reads everyone's, so the CLI, the API and the
dashboard see the figures of the runs, whatever process did the work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Select, Table, delete, func, select
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import as_utc
from engine.errors import StorageError
from engine.store.schema import perf_aggregates, perf_resources

__all__ = [
    "LatencyPoint",
    "PerfDatabase",
    "PerfInterval",
    "PerfStore",
    "ResourceSample",
    "SqlPerfStore",
]

_NOT_FIGURES = ("id", "at", "process", "gauges")
_FIGURES = tuple(c.name for c in perf_resources.columns if c.name not in _NOT_FIGURES)
"""The resource figures that have a column; any other value of a sample is a gauge."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PerfInterval:
    """One operation's calls during one aggregation interval of one process; durations
    in milliseconds, times in UTC."""

    id: int | None = None
    """Set by the database; rows are numbered in the order they were written."""
    interval_start: datetime
    interval_end: datetime
    process: str
    operation: str
    calls: int
    failures: int
    total_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: dict[str, int]
    """Failures by error type."""
    sketch: dict[int, int]
    """Calls per log bucket of their duration, so that intervals merge into percentiles."""

    @property
    def mean_ms(self) -> float:
        """The average duration of the interval's calls, in milliseconds."""
        return self.total_ms / self.calls


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """One sample of a process: its resource figures plus the engine's gauges, by name."""

    at: datetime
    """When it was taken (UTC)."""
    process: str
    """The process that took it (host:pid)."""
    values: dict[str, float]
    """By name, each in its own unit: ``rss_mb`` in MiB, ``cpu_percent`` in percent of one
    core, gauges such as ``cache_hit_rate`` as a fraction."""

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "process": self.process, **self.values}


@dataclass(frozen=True, kw_only=True)
class LatencyPoint:
    """p50/p95 of one operation over a run of neighbouring intervals (a chart point)."""

    at: datetime
    operation: str
    p50_ms: float
    p95_ms: float
    calls: int


class PerfStore(Protocol):
    """Where the monitor keeps its history. Writes may be deferred until :meth:`flush`."""

    def add_intervals(self, rows: Sequence[PerfInterval]) -> None: ...

    def add_samples(self, samples: Sequence[ResourceSample]) -> None: ...

    def flush(self) -> None:
        """Commit the deferred writes."""
        ...

    def prune(self, before: datetime) -> None:
        """Delete intervals that ended and samples taken before ``before``."""
        ...

    def intervals(
        self, *, after: datetime, until: datetime | None = None, operation: str | None = None
    ) -> list[PerfInterval]:
        """Intervals ending in (after, until], oldest first."""
        ...

    def samples(self, *, after: datetime) -> list[ResourceSample]:
        """Samples taken after ``after``, oldest first."""
        ...

    def sample_span(self, *, after: datetime, until: datetime) -> tuple[datetime, datetime] | None:
        """The first and last moments a sample was taken in (after, until]."""
        ...

    def history_start(self) -> datetime | None:
        """The earliest moment history holds: its first interval's start or first sample."""
        ...

    def latency(
        self, *, after: datetime, operations: Sequence[str], max_points: int
    ) -> list[LatencyPoint]:
        """p50/p95 over time of the intervals ending after ``after``, averaged into at
        most ``max_points`` points per operation."""
        ...


class PerfDatabase(Protocol):
    """The part of :class:`engine.store.storage.Storage` that :class:`SqlPerfStore` uses."""

    @property
    def engine(self) -> Engine: ...

    def defer(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def flush(self) -> object: ...

    def transaction(self, operation: str = ...) -> AbstractContextManager[Connection]: ...

    def reading(self, operation: str = ...) -> AbstractContextManager[Connection]: ...


class SqlPerfStore:
    """:class:`PerfStore` on the engine's database.

    Rows go through the storage's deferred writes. History reads use a bare
    connection rather than the storage's timed ``reading``: the monitor must
    not time its own reads, or a process that only reads history would find
    them in its memory and show them instead.
    """

    def __init__(self, db: PerfDatabase) -> None:
        self._db = db

    def add_intervals(self, rows: Sequence[PerfInterval]) -> None:
        if rows:
            self._db.defer(perf_aggregates, [_interval_row(r) for r in rows])

    def add_samples(self, samples: Sequence[ResourceSample]) -> None:
        if samples:
            self._db.defer(perf_resources, [_sample_row(s) for s in samples])

    def flush(self) -> None:
        self._db.flush()

    def prune(self, before: datetime) -> None:
        with self._db.transaction("perf_prune") as conn:
            conn.execute(delete(perf_aggregates).where(perf_aggregates.c.interval_end < before))
            conn.execute(delete(perf_resources).where(perf_resources.c.at < before))

    def intervals(
        self, *, after: datetime, until: datetime | None = None, operation: str | None = None
    ) -> list[PerfInterval]:
        t = perf_aggregates
        query = select(t).where(t.c.interval_end > after).order_by(t.c.interval_start, t.c.id)
        if until is not None:
            query = query.where(t.c.interval_end <= until)
        if operation is not None:
            query = query.where(t.c.operation == operation)
        return [_interval(row._mapping) for row in self._query(query)]

    def samples(self, *, after: datetime) -> list[ResourceSample]:
        t = perf_resources
        query = select(t).where(t.c.at > after).order_by(t.c.at, t.c.id)
        return [_sample(row._mapping) for row in self._query(query)]

    def sample_span(self, *, after: datetime, until: datetime) -> tuple[datetime, datetime] | None:
        t = perf_resources
        query = select(func.min(t.c.at), func.max(t.c.at)).where(t.c.at > after, t.c.at <= until)
        first, last = self._query(query)[0]
        return None if first is None else (as_utc(first), as_utc(last))

    def history_start(self) -> datetime | None:
        a, r = perf_aggregates, perf_resources
        first = select(a.c.interval_start).order_by(a.c.interval_end).limit(1)  # indexed
        found = [row[0] for row in self._query(first)]
        found += [row[0] for row in self._query(select(func.min(r.c.at))) if row[0] is not None]
        return min(as_utc(at) for at in found) if found else None

    def latency(
        self, *, after: datetime, operations: Sequence[str], max_points: int
    ) -> list[LatencyPoint]:
        # Intervals are grouped by row id, which grows with time, so that a long window is
        # averaged in the database rather than sent whole.
        t = perf_aggregates
        where = (t.c.interval_end > after, t.c.operation.in_(operations))
        with self._db.reading("latency_series") as conn:
            lo, hi = conn.execute(select(func.min(t.c.id), func.max(t.c.id)).where(*where)).one()
            if lo is None:
                return []
            step = -(-(hi - lo + 1) // max_points)
            query = (
                select(
                    func.max(t.c.interval_end).label("at"),
                    t.c.operation,
                    func.avg(t.c.p50_ms).label("p50_ms"),
                    func.avg(t.c.p95_ms).label("p95_ms"),
                    func.sum(t.c.calls).label("calls"),
                )
                .where(*where)
                .group_by(t.c.operation, (t.c.id - lo) // step)
                .order_by("at")
            )
            # as_utc: SQLite gives the max of a timestamp without its zone, PostgreSQL with
            return [
                LatencyPoint(**{**row._mapping, "at": as_utc(row.at)})
                for row in conn.execute(query)
            ]

    def _query(self, query: Select[Any]) -> list[Any]:
        try:
            with self._db.engine.connect() as conn:
                return list(conn.execute(query))
        except SQLAlchemyError as exc:
            raise StorageError("perf history", str(exc).splitlines()[0]) from exc


def _interval_row(interval: PerfInterval) -> dict[str, Any]:
    row = asdict(interval)
    del row["id"]
    row["operation"] = interval.operation[:64]  # the column's width on PostgreSQL
    row["errors"] = json.dumps(interval.errors)
    row["sketch"] = json.dumps(interval.sketch)
    return row


def _interval(row: Mapping[str, Any]) -> PerfInterval:
    fields = dict(row)
    fields["interval_start"] = as_utc(row["interval_start"])
    fields["interval_end"] = as_utc(row["interval_end"])
    fields["errors"] = json.loads(row["errors"])
    fields["sketch"] = {int(k): v for k, v in json.loads(row["sketch"]).items()}
    return PerfInterval(**fields)


def _sample_row(sample: ResourceSample) -> dict[str, Any]:
    gauges = {k: v for k, v in sample.values.items() if k not in _FIGURES}
    return {
        "at": sample.at,
        "process": sample.process,
        **{name: sample.values[name] for name in _FIGURES},
        "gauges": json.dumps(gauges),
    }


def _sample(row: Mapping[str, Any]) -> ResourceSample:
    values = {name: float(row[name]) for name in _FIGURES}
    values.update(json.loads(row["gauges"]))
    return ResourceSample(as_utc(row["at"]), row["process"], values)
