"""What the source tests share: a month with a known closing date, snapshot comparison,
and ``recon run`` on a folder source with what it stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from engine.app.console import open_storage
from engine.cli.core import main
from engine.domain.models import Job, Snapshot
from engine.settings import Settings
from engine.sources.sim import Simulator, export_folder

MONTH = "2025-03"
CLOSING = date(2025, 4, 4)
DISTRICTS = ("7", "42", "F")


def same(a: Snapshot, b: Snapshot) -> None:
    assert (a.district, a.as_of, a.data_month) == (b.district, b.as_of, b.data_month)
    assert dict(a.metrics) == dict(b.metrics)


def recon_run(folder: Path, db: Path | str, month: str, *extra: str) -> int:
    """``recon run --month month --source folder`` on the SQLite file ``db`` (or the
    database URL ``db``); its exit code."""
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    argv = ["run", "--month", month, "--source", str(folder), "--db", url]
    return main([*argv, *extra])


def results(db: Path, month: str) -> tuple[dict[str, Job], dict[str, Snapshot]]:
    """The month's jobs and month-end snapshots in ``db``, by district."""
    storage = open_storage(Settings().with_values("storage", db_url=f"sqlite:///{db}").storage)
    try:
        jobs = {j.district: j for j in storage.jobs(month=month)}
        return jobs, storage.month_end_snapshots(month)
    finally:
        storage.close()


# --- an unknown distinguished code in a folder -------------------------------------------

WARNED = ("42", date(2025, 4, 2))
"""The district and collection date (in MONTH's closing period) whose export gets a code."""


def exports_with_code(out: Path, code: str = "H") -> str:
    """The simulator's exports of :data:`DISTRICTS` for :data:`MONTH` under ``out``, the
    first club of the :data:`WARNED` export given distinguished code ``code``; returns
    that file's name relative to ``out`` (how warnings name it)."""
    sim = Simulator(seed=5, calendar={MONTH: CLOSING})
    for _ in export_folder(sim, MONTH, out, districts=DISTRICTS):
        pass
    district, day = WARNED
    name = f"{day.isoformat()}/clubperformance_{district}.csv"
    lines = (out / name).read_bytes().decode("utf-8").split("\r\n")
    lines[1] = f"{lines[1].rsplit(',', 1)[0]},{code}"  # the status is the last cell
    (out / name).write_text("\r\n".join(lines), encoding="utf-8", newline="")
    return name
