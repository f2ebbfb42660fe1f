"""Database schema (SQLAlchemy Core). One MetaData for every table the engine owns.

Works on SQLite (the embedded default) and PostgreSQL. Each part of the engine
keeps its tables in its own section below.
"""

from __future__ import annotations

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
    UniqueConstraint,
)

metadata = MetaData()

# --- reconciliation (runs, jobs, timelines, month-end snapshots) ---------------

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("month", String(7), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
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
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("final_as_of", Date),
    Column("last_check_date", Date),
    Column("checks", Integer, nullable=False, default=0),
    Column("significant_changes", Integer, nullable=False, default=0),
    Column("stable_days", Integer, nullable=False, default=0),
    Column("extension_days", Integer, nullable=False, default=0),
    Column("last_significant_as_of", Date),
    Column("attempts", Integer, nullable=False, default=0),
    Column("significant_dates", Text, nullable=False, default=""),
    UniqueConstraint("run_id", "district", name="uq_jobs_run_district"),
    Index("ix_jobs_month_district", "month", "district"),
    Index("ix_jobs_status", "status"),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("data_month", String(7)),
    Column("metrics", Text, nullable=False),
    Column("changes", Text, nullable=False),
    Column("significant", Boolean, nullable=False),
    Column("note", Text, nullable=False, default=""),
    UniqueConstraint("job_id", "as_of", name="uq_timeline_job_as_of"),
)

month_end_snapshots = Table(
    "month_end_snapshots",
    metadata,
    Column("district", String(4), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("as_of", Date, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("job_id", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# --- batch runner (issue 4) ----------------------------------------------------

# A batch's status: running -> finished | cancelled (set at cancel time so that
# resume never restarts it). ``config`` is the batch's clamped settings as JSON;
# ``items`` its items as a JSON list of ``[spec, priority]``: item N is the Nth.
batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("config", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("items", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("throttled_s", Float, nullable=False, default=0.0),
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
    Column("finished_at", DateTime(timezone=True)),
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
