"""The schema version on real SQLite files: stamped, migrated when additive, refused
otherwise (PostgreSQL's version row: see test_storage_postgres)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from engine.app.console import open_storage
from engine.errors import StorageError
from engine.settings import StorageSettings
from engine.store.database import Database
from engine.store.migrate import SCHEMA_VERSION, plan_migration
from engine.store.schema import metadata

NOW = datetime(2025, 7, 1, tzinfo=UTC).isoformat()


def _version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def _unversioned(path: Path) -> None:
    """A database as the code before schema versions made it: every table, version 0,
    a run with one job."""
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO runs VALUES (1, '2025-06', ?, 'naive', 'sim')", (NOW,))
        conn.execute(
            "INSERT INTO jobs (id, run_id, district, month, status, created_at, checks, "
            "significant_changes, stable_days, extension_days, attempts, significant_dates) "
            "VALUES (1, 1, '42', '2025-06', 'pending', ?, 0, 0, 0, 0, 0, '')",
            (NOW,),
        )
        conn.commit()


def test_a_new_database_is_stamped_with_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Database(f"sqlite:///{path}").close()
    assert _version(path) == SCHEMA_VERSION
    assert {t.name for t in metadata.sorted_tables} <= _tables(path)


def test_an_unversioned_database_of_the_same_schema_is_stamped_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _unversioned(path)
    assert _version(path) == 0
    Database(f"sqlite:///{path}").close()
    assert _version(path) == SCHEMA_VERSION
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT district, status FROM jobs").fetchall() == [("42", "pending")]


def test_an_older_database_is_migrated_when_the_change_is_additive(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _unversioned(path)
    with closing(sqlite3.connect(path)) as conn:  # older: no bench table, no job error
        conn.execute("DROP TABLE bench_results")
        conn.execute("ALTER TABLE jobs DROP COLUMN error")
        conn.commit()
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        plan = plan_migration(conn)
    engine.dispose()
    assert [t.name for t in plan.tables] == ["bench_results"]
    assert [f"{c.table.name}.{c.name}" for c in plan.columns] == ["jobs.error"]
    assert plan.refused is None

    Database(f"sqlite:///{path}").close()
    assert _version(path) == SCHEMA_VERSION
    assert "bench_results" in _tables(path)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT district, error FROM jobs").fetchall() == [("42", None)]


def test_an_older_database_that_needs_more_than_additions_is_refused_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _unversioned(path)
    with closing(sqlite3.connect(path)) as conn:  # a required column is missing
        conn.execute("DROP TABLE bench_results")
        conn.execute("ALTER TABLE jobs DROP COLUMN significant_dates")
        conn.commit()
    with pytest.raises(StorageError) as refused:
        Database(f"sqlite:///{path}")
    message = str(refused.value)
    assert f"schema 0; this code uses schema {SCHEMA_VERSION}" in message
    assert "jobs has no column significant_dates" in message and "delete it" in message
    assert _version(path) == 0 and "bench_results" not in _tables(path)  # nothing changed


def test_a_database_of_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    Database(f"sqlite:///{path}").close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.execute("DROP TABLE bench_results")
        conn.commit()
    with pytest.raises(StorageError, match=f"newer version \\(schema {SCHEMA_VERSION + 1}; "):
        Database(f"sqlite:///{path}")
    assert _version(path) == SCHEMA_VERSION + 1 and "bench_results" not in _tables(path)


def test_a_database_of_an_older_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:  # batches as an older version made it
        conn.execute("CREATE TABLE batches (id INTEGER PRIMARY KEY, name TEXT, status TEXT)")
        conn.execute("INSERT INTO batches VALUES (1, 'kept', 'finished')")
        conn.commit()
    with pytest.raises(StorageError, match="older version.*batches has no column config.*delete"):
        Database(f"sqlite:///{path}")
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT name FROM batches").fetchall() == [("kept",)]
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        assert tables == [("batches",)]  # untouched: nothing was added either


def _version_1(path: Path) -> None:
    """A database as schema version 1 made it: no ``timeline.warnings``, one entry."""
    _unversioned(path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("ALTER TABLE timeline DROP COLUMN warnings")
        conn.execute(
            "INSERT INTO timeline (id, job_id, as_of, checked_at, data_month, metrics, changes, "
            "significant, note) VALUES (1, 1, '2025-07-02', ?, '2025-06', "
            "'{\"membership\": 100.0}', '[]', 0, 'first snapshot')",
            (NOW,),
        )
        conn.execute("PRAGMA user_version = 1")
        conn.commit()


def test_a_version_1_database_gains_the_timeline_warnings_and_keeps_its_entries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.db"
    _version_1(path)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        plan = plan_migration(conn)
    engine.dispose()
    assert plan.tables == () and plan.refused is None
    assert [f"{c.table.name}.{c.name}" for c in plan.columns] == ["timeline.warnings"]

    storage = open_storage(StorageSettings(db_url=f"sqlite:///{path}", mode="naive"))
    try:
        (old,) = storage.timeline(1)
        assert (old.metrics["membership"], old.note, old.warnings) == (100, "first snapshot", ())
        job = storage.get_job(1)
        later = replace(old, as_of=date(2025, 7, 3), warnings=("2025-07-04/x.csv: 'H'",))
        storage.save_progress(job, later, None)
        assert [e.warnings for e in storage.timeline(1)] == [(), later.warnings]
    finally:
        storage.close()
    assert _version(path) == SCHEMA_VERSION == 7


def _open_when_released(url: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        Database(url).close()
        results.put("opened")
    except StorageError as exc:
        results.put(str(exc))


def opened_at_once(url: str, processes: int = 6) -> list[str]:
    """Open the database of ``url`` from ``processes`` processes released at the same
    instant; what each said ("opened" or its error)."""
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(processes), ctx.Queue()
    args = (url, start, results)
    procs = [ctx.Process(target=_open_when_released, args=args) for _ in range(processes)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join()
    return outcomes


def test_processes_opening_one_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Two ``recon run`` started together on a new file: the one SQLite answers
    "locked" while the other switches the file to WAL tries again. A race, so many
    rounds (before the fix about one round of six processes in sixty failed)."""
    for round_ in range(40):
        outcomes = opened_at_once(f"sqlite:///{tmp_path / f'new{round_}.db'}")
        assert outcomes == ["opened"] * 6, (round_, outcomes)
        assert _version(tmp_path / f"new{round_}.db") == SCHEMA_VERSION
