"""A ``recon run`` killed with SIGKILL at random points finishes the month on re-run,
with the same whole database state as an uninterrupted run and nothing duplicated;
on SQLite and on PostgreSQL (compared with the same uninterrupted run on SQLite)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from engine.cli.core import main
from engine.store.schema import timeline

from .conftest import ROOT, Figures, Reference, recon, run_args, soak
from .state import compare, dump, kinds

# A killed replay is resumed by the re-run, which counts one more attempt: by design.
RESUMED = ("jobs.attempts",)


def _engine(db: Path | str) -> Engine:
    return create_engine(db if isinstance(db, str) else f"sqlite:///{db}")


def entries(db: Path | str) -> int:
    """The timeline entries committed in ``db`` (a SQLite file or a URL)."""
    engine = _engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(timeline)).scalar_one())
    except SQLAlchemyError:  # not created yet
        return 0
    finally:
        engine.dispose()


def health(db: Path | str) -> dict[str, object]:
    """The timeline entries stored twice (job, as-of), and SQLite's integrity check
    (PostgreSQL's is its own business: a crashed client cannot corrupt the server)."""
    engine = _engine(db)
    try:
        with engine.connect() as conn:
            dupes = conn.execute(text(
                "SELECT count(*) FROM"
                " (SELECT job_id, as_of FROM timeline GROUP BY 1, 2 HAVING count(*) > 1) AS d"
            )).scalar_one()  # fmt: skip
            found: dict[str, object] = {"duplicate_entries": dupes}
            if engine.dialect.name == "sqlite":
                found["integrity"] = conn.execute(text("PRAGMA integrity_check")).scalar_one()
            return found
    finally:
        engine.dispose()


def kill_after(db: str, threshold: int) -> bool:
    """Start ``recon run``; SIGKILL it once ``threshold`` entries are durable.

    False if the run ended first.
    """
    proc = subprocess.Popen(
        recon(*run_args(db)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=os.environ | {"RECON_STORAGE_LEASE_TTL_S": "2"},  # the re-run waits 2 s at most
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while proc.poll() is None and entries(db) < threshold and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the database for the kill point
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def test_sigkill_at_random_points_then_rerun_matches_uninterrupted(
    db_url: str, backend: str, figures: Figures, uninterrupted: Reference
) -> None:
    expected = uninterrupted(run_args())
    total = kinds(expected)["entry"]
    assert total > 0 and all(v["status"] == "completed" for k, v in expected.items()
                             if k.kind == "job")  # fmt: skip
    snapshots = [json.loads(str(v["metrics"])) for k, v in expected.items() if k.kind == "snapshot"]
    assert snapshots and all(snapshots)  # real figures, not empty

    crashed = db_url
    rng = random.Random(7)
    points = sorted(rng.sample(range(total // 10, total), 6 if soak() else 3))
    kills = sum(kill_after(crashed, point) for point in points)
    code = main([*run_args(crashed), "--wait"])  # the killed run's lease expires first
    diff = compare(expected, dump(crashed), ignore=RESUMED)
    found = health(crashed)
    figures.config(districts=kinds(expected)["job"], kill_points=len(points), kill_seed=7)
    measured = dict(kills_landed=kills, entries=total, rerun_exit_code=code, **found,
                    **diff.figures())  # fmt: skip
    figures.measure(**{(k if backend == "sqlite" else f"{backend}_{k}"): v
                       for k, v in measured.items()})  # fmt: skip

    assert kills >= 2, "the run finished before it could be killed: raise the sizes"
    assert code == 0
    assert found["duplicate_entries"] == 0
    assert found.get("integrity", "ok") == "ok"
    assert diff.none, diff.describe()
