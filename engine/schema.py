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

# --- performance monitor (issue 5) ---------------------------------------------

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

