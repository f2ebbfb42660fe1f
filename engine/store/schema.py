"""Database schema (SQLAlchemy Core). One MetaData for every table the engine owns.

Works on SQLite (the embedded default) and PostgreSQL. Each part of the engine
keeps its tables in its own section below.

The reconciliation and batch tables store dates and timestamps with :class:`ISODate` and
:class:`UTCDateTime`: native DATE and TIMESTAMP WITH TIME ZONE on PostgreSQL,
ISO-8601 text on SQLite (``2025-07-01``; ``2025-07-01T12:00:00+00:00``)
converted with ``isoformat`` / ``fromisoformat``, which is several times cheaper
than SQLAlchemy's field-by-field SQLite formatting for the bulk writes and reads
of timelines.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect, processors

metadata = MetaData()

# --- column types ------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)  # a day's date is written by every check of that day
def _date_text(value: date | None) -> str | None:
    return None if value is None else date.isoformat(value)  # a datetime: its date part


def _utc_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # value.isoformat(), at two thirds of its cost: an aware datetime formats its offset
    # through timedelta arithmetic, and the date part is formatted once a day above.
    return f"{_date_text(value.date())}T{value.time().isoformat()}+00:00"


class ISODate(TypeDecorator[date]):
    """A date: DATE; on SQLite ``YYYY-MM-DD`` text, the format of SQLAlchemy's ``Date``.

    Only the SQLite write differs from ``Date``: one ``date.isoformat`` call.
    """

    impl = Date
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        # Overridden rather than process_bind_param: SQLite's own DATE processor,
        # which this replaces, is the slow part.
        return _date_text if dialect.name == "sqlite" else super().bind_processor(dialect)


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC timestamp: TIMESTAMP WITH TIME ZONE; on SQLite ISO-8601 text with the
    offset, e.g. ``2025-07-01T12:00:00+00:00`` or ``2025-07-01T12:00:00.250000+00:00``
    (all in UTC, so text order is time order: "+" sorts before ".").

    Aware datetimes are stored in UTC and naive ones taken as UTC (the engine only
    stores UTC). On SQLite, reads return aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def bind_processor(self, dialect: Dialect) -> Any:
        return _utc_text if dialect.name == "sqlite" else super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name == "sqlite":
            return processors.str_to_datetime  # fromisoformat; None stays None
        return super().result_processor(dialect, coltype)


class Flag(TypeDecorator[bool]):
    """A bool: BOOLEAN; on SQLite 0 or 1, as SQLAlchemy's ``Boolean`` stores it.

    Only the SQLite write differs: the value goes to sqlite3 as it is (a bool is an
    int to it), without ``Boolean``'s two calls per value.
    """

    impl = Boolean
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        return None if dialect.name == "sqlite" else super().bind_processor(dialect)


# --- reconciliation (runs, jobs, timelines, month-end snapshots) ---------------

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("month", String(7), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("source", Text, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False, index=True),
    Column("district", String(4), nullable=False),
    Column("month", String(7), nullable=False),
    Column("status", String(16), nullable=False),
    Column("phase", String(16)),
    Column("reason", String(32)),
    Column("error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime()),
    Column("final_as_of", ISODate),
    Column("last_check_date", ISODate),
    Column("checks", Integer, nullable=False, default=0),
    Column("significant_changes", Integer, nullable=False, default=0),
    Column("stable_days", Integer, nullable=False, default=0),
    Column("extension_days", Integer, nullable=False, default=0),
    Column("last_significant_as_of", ISODate),
    Column("attempts", Integer, nullable=False, default=0),
    Column("significant_dates", Text, nullable=False, default=""),
    UniqueConstraint("run_id", "district", name="uq_jobs_run_district"),
    Index("ix_jobs_month_district", "month", "district"),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("as_of", ISODate, nullable=False),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("data_month", String(7)),
    Column("metrics", Text, nullable=False),
    Column("changes", Text, nullable=False),
    Column("significant", Flag, nullable=False),
    Column("note", Text, nullable=False, default=""),
    # The snapshot's warnings as a JSON list of strings; NULL when it had none (the
    # usual check: nothing to encode or decode). Added in schema version 2.
    Column("warnings", Text),
    # The collection date of the check that wrote the entry: a check reads the job's
    # last entry collected before its own day, so that a check retried after its entry
    # but not its job's counters was committed (naive mode commits them one by one)
    # ignores its own entry. NULL in entries written before schema version 7.
    Column("collected_on", ISODate),
    UniqueConstraint("job_id", "as_of", name="uq_timeline_job_as_of"),
)

month_end_snapshots = Table(
    "month_end_snapshots",
    metadata,
    Column("district", String(4), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("as_of", ISODate, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("job_id", Integer),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# --- changes (issue 16: freshness across processes) ------------------------------

# One row per committed transaction that wrote runs, jobs, timeline entries or
# month-end snapshots, in that transaction: which jobs and months it changed
# (comma-separated), and which process-level writer (a Database) made it, so that
# every other process drops what it cached of them (see engine.store.changes).
changes = Table(
    "changes",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("writer", String(32), nullable=False),
    Column("job_ids", Text, nullable=False),
    Column("months", Text, nullable=False),
)

# --- batch runner (issue 4) ----------------------------------------------------

# A batch's status: running -> finished | cancelled (set at cancel time so that
# resume never restarts it), or interrupted (its process stopped). ``config`` is the
# batch's clamped settings as JSON; ``items`` its items as a JSON list of
# ``[spec, priority]``: item N is the Nth. ``lease`` and ``holder`` name the lease
# whose holder runs the batch (a thread runner's month lease): once no unexpired
# lease has that holder, any process can see that the batch was abandoned. NULL for
# batches no lease guards (procrastinate's run on in the workers). Schema version 7.
batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("config", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("items", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("throttled_s", Float, nullable=False, default=0.0),
    Column("lease", String(200)),
    Column("holder", String(200)),
)

# One row per item that finished, or that was interrupted (status ``queued``,
# kept for its attempts): an item without a row is queued. ``history`` is the
# JSON list of attempts (attempt, started_at, duration_s, outcome, error,
# progressed). Rows are written in groups; an interrupted item's row is replaced
# when it finishes.
batch_items = Table(
    "batch_items",
    metadata,
    Column("batch_id", Integer, ForeignKey("batches.id"), primary_key=True),
    Column("item_id", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("history", Text, nullable=False),
    Column("result", Text),
    Column("error", Text),
    Column("finished_at", UTCDateTime()),
    sqlite_with_rowid=False,  # the key is the table: one b-tree per row written, not two
)

# --- performance monitor (issue 5) ---------------------------------------------

# Per-operation aggregates of one aggregation interval of one process; ``sketch`` is a
# JSON {bucket: count} log-bucket histogram so that intervals merge into window percentiles.
perf_aggregates = Table(
    "perf_aggregates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("interval_start", DateTime(timezone=True), nullable=False),
    Column("interval_end", DateTime(timezone=True), nullable=False),
    Column("process", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("calls", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("total_ms", Float, nullable=False),
    Column("min_ms", Float, nullable=False),
    Column("max_ms", Float, nullable=False),
    Column("p50_ms", Float, nullable=False),
    Column("p95_ms", Float, nullable=False),
    Column("p99_ms", Float, nullable=False),
    Column("errors", Text, nullable=False),
    Column("sketch", Text, nullable=False),
    Index("ix_perf_aggregates_end", "interval_end"),
    Index("ix_perf_aggregates_operation_end", "operation", "interval_end"),
)

# Resource samples; ``gauges`` is a JSON object of the engine's own gauges.
perf_resources = Table(
    "perf_resources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("process", String(64), nullable=False),
    Column("rss_mb", Float, nullable=False),
    Column("cpu_percent", Float, nullable=False),
    Column("threads", Float, nullable=False),
    Column("open_files", Float, nullable=False),
    Column("system_memory_percent", Float, nullable=False),
    Column("disk_read_bytes", Float, nullable=False),
    Column("disk_write_bytes", Float, nullable=False),
    Column("gauges", Text, nullable=False),
)

# --- benchmarks (issue 8) --------------------------------------------------------

bench_results = Table(
    "bench_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("suite", String(32), nullable=False),
    Column("quick", Boolean, nullable=False),
    Column("result", Text, nullable=False),
)

# --- leases (issue 18) -----------------------------------------------------------

# A named lease (e.g. ``month:2025-06``) held by one process until ``expires_at``;
# the holder's heartbeat moves ``expires_at`` on, and an expired lease may be taken.
leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

# --- alerts (issue 16) -------------------------------------------------------------

# Events for the webhook and the event lists (engine.store.events). ``key`` makes an
# event happen once per occurrence (a second insert of one key is ignored); ``payload``
# is the JSON body's details; an event is undelivered while ``delivered_at`` is NULL,
# and retried from ``next_attempt_at`` (NULL: at once).
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(200), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("month", String(7), index=True),
    Column("district", String(4)),
    Column("job_id", Integer),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", UTCDateTime()),
    Index("ix_events_undelivered", "delivered_at", "next_attempt_at"),
)

# --- watcher (issue 16) ------------------------------------------------------------

# What the watcher of a database (``recon watch``, or the dashboard's embedded one) last
# did, one row per watcher lease name: other processes show it (Close progress, /healthz).
watcher_status = Table(
    "watcher_status",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_tick_at", UTCDateTime()),
    Column("next_tick_at", UTCDateTime()),
    Column("ticks", Integer, nullable=False, default=0),
    Column("open_jobs", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("stopped_at", UTCDateTime()),
    # Set by the workers' periodic ticks (``recon worker --watch``), which hold the
    # lease only while they tick: the period they tick at (None for ``recon watch``).
    Column("period_s", Float),
)

# --- batch workers (issue 17) ------------------------------------------------------

# One row per ``recon worker`` process (procrastinate runner): its heartbeat moves
# ``heartbeat_at`` on every few seconds, ``running`` is the JSON list of the items it
# works (``[[batch_id, item_id], ...]``). A worker that stops cleanly deletes its row;
# one whose heartbeat is older than ``batch.stallTimeoutS`` is shown as lost.
workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("running", Text, nullable=False, default="[]"),
    Column("done", Integer, nullable=False, default=0),
)

# Items of the procrastinate runner at the global ``maxConcurrentJobs`` slots
# (engine.store.taskqueue): one row per item waiting for a slot or holding one
# (``holding``); ``seq`` is its procrastinate job's id. A job that procrastinate has
# handed to a worker (``doing``) and that holds no slot waits: it goes first when its
# priority is higher, or equal and its job older.
slot_waiters = Table(
    "slot_waiters",
    metadata,
    Column("item", String(64), primary_key=True),
    Column("seq", Integer, nullable=False, index=True),
    Column("holding", Boolean, nullable=False, default=False),
)
