"""What the source tests share: a month with a known closing date, snapshot comparison,
and ``recon run`` on a folder source with what it stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from engine.app.console import open_storage
from engine.cli.core import main
from engine.domain.models import Job, Snapshot
from engine.settings import Settings

MONTH = "2025-03"
CLOSING = date(2025, 4, 4)
DISTRICTS = ("7", "42", "F")


def same(a: Snapshot, b: Snapshot) -> None:
    assert (a.district, a.as_of, a.data_month) == (b.district, b.as_of, b.data_month)
    assert dict(a.metrics) == dict(b.metrics)


def recon_run(folder: Path, db: Path, month: str, *extra: str) -> int:
    """``recon run --month month --source folder`` on the SQLite file ``db``; its exit code."""
    argv = ["run", "--month", month, "--source", str(folder), "--db", f"sqlite:///{db}"]
    return main([*argv, *extra])


def results(db: Path, month: str) -> tuple[dict[str, Job], dict[str, Snapshot]]:
    """The month's jobs and month-end snapshots in ``db``, by district."""
    storage = open_storage(Settings().with_values("storage", db_url=f"sqlite:///{db}").storage)
    try:
        jobs = {j.district: j for j in storage.jobs(month=month)}
        return jobs, storage.month_end_snapshots(month)
    finally:
        storage.close()
