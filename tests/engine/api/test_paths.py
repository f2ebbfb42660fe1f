"""Errors the API serves show no local file paths: relative to the source folder, home as ``~``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from engine.api.app import create_app
from engine.api.paths import PathRedactor, redactor_for
from engine.app.console import Console
from engine.settings import Settings, SourceSettings
from engine.sources.sim import Simulator
from engine.sources.sim.folder import export_folder
from tests.engine.api.test_api import JOBS, PERF, ok, serving

MONTH = "2025-03"


def test_prefixes_become_relative_or_short() -> None:
    redact = PathRedactor(prefixes={"/data/exports": "", "/home/ann": "~", "/tmp": "$TMPDIR"})
    assert redact("ParseError: /data/exports/2025-04-01/c_2.csv, line 1: bad") == (
        "ParseError: 2025-04-01/c_2.csv, line 1: bad"
    )
    assert redact("no folder '/data/exports'") == "no folder '.'"
    assert (
        redact("cannot open /home/ann/recon/data/recon.db") == "cannot open ~/recon/data/recon.db"
    )
    assert redact("/tmp/x.csv and /tmp") == "$TMPDIR/x.csv and $TMPDIR"


def test_only_whole_components_at_a_path_start_match() -> None:
    redact = PathRedactor(prefixes={"/home/ann": "~", "/tmp": "$TMPDIR"})
    for text in ("/home/anna/x", "/var/tmp/x", "http://host/tmp/x", "/tmpfiles/x", "a/tmp/x"):
        assert redact(text) == text
    assert redact("") == "" and redact.optional(None) is None


def test_the_longest_prefix_wins(tmp_path: Path) -> None:
    source = tmp_path / "exports"  # under the temp folder
    redact = redactor_for(SourceSettings(source=str(source)))
    assert redact(f"{source}/2025-04-01/c.csv") == "2025-04-01/c.csv"
    assert redact(f"{tmp_path}/other.csv").startswith("$TMPDIR/")
    assert redact(f"{Path.home()}/recon.db") == "~/recon.db"


def test_a_linked_source_folder_is_matched_both_ways(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    redact = redactor_for(SourceSettings(source=str(tmp_path / "link")))
    assert redact(f"{real}/a.csv") == redact(f"{tmp_path / 'link'}/a.csv") == "a.csv"


def test_sim_and_http_sources_have_no_folder() -> None:
    for source in ("sim", "http://127.0.0.1:9/exports"):
        redact = redactor_for(SourceSettings(source=source))
        assert redact("http://127.0.0.1:9/exports/x.csv") == "http://127.0.0.1:9/exports/x.csv"


@pytest.fixture
def failed(tmp_path: Path) -> Iterator[tuple[httpx.Client, int, Path]]:
    """A served console whose folder source holds unreadable exports of district 2, and the
    batch that failed on them."""
    folder = tmp_path / "exports"
    for written in export_folder(Simulator(seed=42), MONTH, folder, districts=["2"]):
        if written.name.startswith("clubperformance"):
            written.write_text("not an export\n")
    settings = (
        Settings()
        .with_values("storage", db_url=f"sqlite:///{tmp_path / 'paths.db'}")
        .with_values("source", source=str(folder))
    )
    with ExitStack() as stack:
        console = Console(settings)
        stack.callback(console.close)
        batch_id = console.start_batch(MONTH, districts=["2"], config={"retryAttempts": 0}).batch_id
        console.batch.run(until_idle=True)
        url = stack.enter_context(serving(create_app(console)))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        yield client, batch_id, folder


def test_job_and_batch_errors_show_no_local_paths(
    failed: tuple[httpx.Client, int, Path],
) -> None:
    client, batch_id, folder = failed
    jobs = ok(client.get(JOBS, params={"month": MONTH}))["jobs"]
    job = ok(client.get(f"{JOBS}/{jobs[0]['id']}"))
    batch = ok(client.get(f"{PERF}/batch/{batch_id}"))
    item = batch["items"][0]
    errors = [jobs[0]["error"], job["error"], item["error"], item["attempts"][0]["error"]]
    assert job["status"] == "failed" and item["status"] == "failed"
    for error in errors:  # the user still learns which file, relative to the source folder
        assert re.search(r"(?<![/\w])\d{4}-\d{2}-\d{2}/clubperformance_2\.csv", error), error
    served = " ".join(
        client.get(path).text
        for path in (f"{JOBS}?month={MONTH}", f"{JOBS}/{jobs[0]['id']}", f"{PERF}/batch/{batch_id}")
    )
    for local in {str(folder), os.path.realpath(folder), str(Path.home()), str(folder.parent)}:
        assert local not in served
