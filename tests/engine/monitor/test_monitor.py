"""The monitor as its callers see it: one report, and the ``recon perf`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.app.console import open_storage
from engine.cli.core import main
from engine.clock import FakeClock
from engine.monitor.core import Monitor, ReportSummary
from engine.settings import MonitorSettings, StorageSettings
from engine.store.perf import SqlPerfStore
from tests.engine.monitor.support import Reader, record_ms


def test_report(monitor: Monitor, clock: FakeClock) -> None:
    record_ms(monitor, "source.fetch", [100, 300], failures=1)
    record_ms(monitor, "parse", [10, 20])
    monitor.record("batch.run", 40.0)
    monitor.sample_now()
    report = monitor.report()
    assert report.generated_at == clock.now() and report.source == "memory"
    assert report.summary == ReportSummary(
        total_operations=5,
        distinct_operations=3,
        failures=1,
        success_rate=0.8,
        mean_response_ms=pytest.approx((400 + 30 + 40_000) / 5),
    )
    top = [op.operation for op in report.top_operations]
    assert top == ["batch.run", "source.fetch", "parse"]
    assert {"slow-mean", "time-share"} <= {b.rule for b in report.bottlenecks}
    assert report.resources.count == 1 and "rss_mb" in report.resources.summary
    assert report.resources.peak_memory_mb == report.resources.summary["rss_mb"].peak
    assert report.recommendations[0].category == "Performance"


# --- command line ---------------------------------------------------------------------------


REPORT_KEYS = [
    "window_s",
    "generated_at",
    "source",
    "summary",
    "top_operations",
    "bottlenecks",
    "resources",
    "recommendations",
]
"""``recon perf report --json``: its keys, in the order the first version printed them."""
SUMMARY_KEYS = [
    "total_operations",
    "distinct_operations",
    "failures",
    "success_rate",
    "mean_response_ms",
]


def test_perf_commands_read_history_of_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'perf.db'}"
    storage = open_storage(StorageSettings(db_url=url))
    writer = Monitor(
        MonitorSettings(), store=SqlPerfStore(storage), resource_reader=Reader(rss_mb=64)
    )
    record_ms(writer, "source.fetch", [20] * 11, failures=2)
    writer.sample_now()
    writer.close()
    storage.close()

    assert main(["--db", url, "perf", "stats", "--window", "1h", "--json"]) == 0
    (fetch,) = json.loads(capsys.readouterr().out)
    assert (fetch["operation"], fetch["calls"], fetch["failures"]) == ("source.fetch", 11, 2)
    assert main(["--db", url, "perf", "report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "history" and report["summary"]["total_operations"] == 11
    assert report["recommendations"][0]["category"] == "Reliability"
    assert list(report) == REPORT_KEYS and list(report["summary"]) == SUMMARY_KEYS
    assert list(report["resources"]) == ["source", "count", "summary"]
    assert report["resources"]["summary"]["rss_mb"] == {"avg": 64.0, "peak": 64.0}
    assert report["top_operations"][0]["operation"] == "source.fetch"
    assert main(["--db", url, "perf", "resources", "--json"]) == 0
    resources = json.loads(capsys.readouterr().out)
    assert list(resources) == ["window_s", "source", "count", "samples", "summary"]
    (sample,) = resources["samples"]
    assert list(sample)[:2] == ["at", "process"] and sample["rss_mb"] == 64.0
    assert main(["--db", url, "perf", "resources"]) == 0
    assert "rss_mb" in capsys.readouterr().out
    assert main(["--db", url, "perf", "bottlenecks", "--window", "5x"]) == 2
