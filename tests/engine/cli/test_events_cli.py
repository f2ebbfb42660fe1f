"""Alerts end to end: real `recon run` processes post to a webhook receiver on 127.0.0.1,
and `recon events` lists what was stored with its delivery state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.settings import Settings
from engine.sources.sim import Simulator, export_folder
from tests.engine.notify.receiver import receiving

ROOT = Path(__file__).resolve().parents[3]
MONTH = "2025-06"


def recon(*args: str, db: Path, webhook: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env["PYTHONPATH"] = str(ROOT)
    if webhook:
        env["RECON_NOTIFY_WEBHOOK_URL"] = webhook
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{db}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def folder_source(tmp_path: Path) -> Path:
    """Three districts' exports of June 2025; district 3's first export is broken."""
    folder = tmp_path / "exports"
    sim = Simulator(seed=Settings().source.seed)
    list(export_folder(sim, MONTH, folder, districts=["1", "2", "3"]))
    first = min(p for p in folder.iterdir() if p.is_dir())
    (first / "clubperformance_3.csv").write_text("not an export\n")
    return folder


def test_a_real_run_posts_month_final_and_job_failed_and_recon_events_lists_them(
    tmp_path: Path,
) -> None:
    source = folder_source(tmp_path)
    db = tmp_path / "recon.db"
    with receiving() as (url, receiver):
        run = ("run", "--month", MONTH, "--source", str(source))
        clean = recon(*run, "--districts", "1,2", db=db, webhook=url)
        assert clean.returncode == 0, clean.stderr
        broken = recon(*run, "--districts", "3", db=db, webhook=url)  # a second run of June
        assert broken.returncode == 1, broken.stderr  # an item failed
        bodies = receiver.wait_for({"month-final", "job-failed"})
    final = next(b for b in bodies if b["kind"] == "month-final")
    assert final["month"] == MONTH and final["payload"]["districts"] == 2
    failed = next(b for b in bodies if b["kind"] == "job-failed")
    assert failed["district"] == "3" and "not an export" not in failed["payload"]["error"]
    assert "clubperformance_3.csv" in failed["payload"]["error"]
    assert len({b["key"] for b in bodies}) == len(bodies)  # each event posted once

    listed = recon("events", "--month", MONTH, "--json", db=db)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {r["kind"] for r in rows} >= {"month-final", "job-failed"}
    assert all(r["delivered"] and r["attempts"] == 1 for r in rows)
    assert {r["key"] for r in rows} == {b["key"] for b in bodies}

    only = recon("events", "--kind", "job-failed", db=db)
    assert only.returncode == 0 and "job-failed" in only.stdout and "month-final" not in only.stdout
    assert recon("events", "--month", "2025-13", db=db).returncode == 2
