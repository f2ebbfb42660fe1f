from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update

from engine.app.console import open_storage
from engine.bench import PAGES_SUITE, TARGETS, Target, against, e2e
from engine.bench.replay import step_settings
from engine.cli.core import main
from engine.errors import ConfigError
from engine.settings import OPTIMIZATIONS, Settings, StorageSettings
from engine.store.schema import bench_results

# The fields the benchmarks issue names for each suite.
FIELDS = {
    "e2e": (
        "naive_s",
        "optimized_s",
        "speedup",
        "checks",
        "io_lower_bound_s",
        "optimized_vs_lower_bound",
        "naive_db_roundtrips",
        "optimized_db_roundtrips",
        "naive_peak_rss_mb",
        "optimized_peak_rss_mb",
    ),
    "storage": (
        "write_row_commit_per_s",
        "write_batched_per_s",
        "write_speedup",
        "read_single_s",
        "read_bulk_s",
        "read_speedup",
    ),
    "cache": (
        "hit_p50_us",
        "hit_p95_us",
        "locked_cachetools_p50_us",
        "dict_p50_us",
        "overhead_vs_cachetools",
        "workload_hit_rate",
    ),
    "batch": (
        "overhead_per_item_us",
        "threadpool_per_item_us",
        "overhead_ratio",
        "speedup_at_5",
        "speedup_at_10",
        "speedup_at_20",
    ),
    "monitor": (
        "timed_op_ns",
        "perf_counter_pair_ns",
        "prometheus_observe_ns",
        "overhead_vs_prometheus",
    ),
    "freshness": (
        "cross_process_staleness_s",
        "cross_process_staleness_median_s",
        "reader_hit_rate",
        "change_poll_us",
        "trials",
    ),
    "scale": (
        "threads_s",
        "workers_1_s",
        "workers_2_s",
        "workers_4_s",
        "speedup_at_2",
        "speedup_at_4",
        "per_item_overhead_ms",
        "cross_process_staleness_s",
    ),
}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_run_of_every_suite_writes_json_markdown_and_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["bench", "--quick", "--json", str(out), "--markdown", str(md), "--db", url]

    assert main(argv) == 0

    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["python"].count(".") == 2
    assert report["date"][:2] == "20"
    for suite, fields in FIELDS.items():
        missing = [f for f in fields if not is_number(report[suite].get(f))]
        assert not missing, f"{suite}: {missing} absent or not numeric"
        # each timing of the suites' own choosing comes with its spread
        assert all(is_number(v) for k, v in report[suite].items() if k != "steps"), suite
    e2e_report = report["e2e"]
    assert e2e_report["naive_s_spread"] >= 0 and e2e_report["repetitions"] >= 2
    steps = e2e_report["steps"]
    assert [s["step"] for s in steps] == list(e2e.STEPS)
    assert list(e2e.STEPS) == ["naive", "concurrency", "shared_summary", "batched_writes", "caches"]
    assert all(set(s) == {"step", "seconds"} and is_number(s["seconds"]) for s in steps)
    assert steps[0]["seconds"] == e2e_report["naive_s"]
    assert steps[-1]["seconds"] == e2e_report["optimized_s"]
    table = md.read_text()
    assert "| e2e | speedup |" in table and "| >= 10 |" in table
    assert "| e2e step | seconds |" in table and "| caches |" in table

    storage = open_storage(StorageSettings(db_url=url))
    try:
        with storage.reading() as conn:
            rows = conn.execute(select(bench_results)).all()
    finally:
        storage.close()
    assert sorted(r.suite for r in rows) == sorted(FIELDS)
    assert all(r.quick for r in rows)
    stored = {r.suite: json.loads(r.result) for r in rows}
    assert stored["storage"]["write_speedup"] == report["storage"]["write_speedup"]
    assert stored["e2e"]["machine"] == report["machine"]
    scale = report["scale"]  # the workers ran every item: each configuration timed it all
    assert scale["items"] == 4 and scale["workers_4_s"] > 0 and scale["threads_s"] > 0
    assert scale["speedup_at_2"] == scale["workers_1_s"] / scale["workers_2_s"]


def test_one_suite_only(tmp_path: Path) -> None:
    out = tmp_path / "monitor.json"
    db = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["bench", "--suite", "monitor", "--quick", "--json", str(out), "--db", db]) == 0
    report = json.loads(out.read_text())
    assert "monitor" in report and "e2e" not in report


def test_freshness_suite_sees_a_writer_process_commit_within_its_target(
    tmp_path: Path, db_url: str
) -> None:
    """On SQLite in a temporary file; with a PostgreSQL ``--db``, in a scratch database
    on its server, dropped after."""
    out = tmp_path / "fresh.json"
    before = databases(db_url)
    assert (
        main(["bench", "--suite", "freshness", "--quick", "--json", str(out), "--db", db_url]) == 0
    )
    assert databases(db_url) == before
    fresh = json.loads(out.read_text())["freshness"]
    assert fresh["trials"] == 3
    assert 0 <= fresh["cross_process_staleness_median_s"] <= fresh["cross_process_staleness_s"]
    assert TARGETS["freshness"]["cross_process_staleness_s"].met(fresh["cross_process_staleness_s"])
    assert fresh["reader_hit_rate"] > 0.5  # the reader's waiting reads were cache hits
    assert fresh["change_poll_us"] > 0


def databases(url: str) -> set[str]:
    """The databases on ``url``'s PostgreSQL server (none for SQLite)."""
    if not url.startswith("postgresql"):
        return set()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_compare_replays_the_same_work_in_both_modes_and_reports_progress() -> None:
    seen: list[tuple[str, int, int]] = []
    result = e2e.compare(
        districts=3,
        latency_ms=0.0,
        closing_days=2,
        concurrency=2,
        on_progress=lambda mode, done, total: seen.append((mode, done, total)),
    )

    checks = result["checks"]
    assert checks == 3 * 3  # per district: two closing days, and the day June is published
    # naive: every check fetches the club export and the district summary;
    # optimized: one summary per collection date (3), shared by the districts
    assert result["naive_requests"] == 2 * checks
    assert result["optimized_requests"] == checks + 3
    assert result["districts"] == 3
    assert result["naive_db_roundtrips"] > result["optimized_db_roundtrips"] > 0
    assert result["naive_peak_rss_mb"] > 0 and result["optimized_peak_rss_mb"] > 0
    assert result["speedup"] == pytest.approx(result["naive_s"] / result["optimized_s"])
    assert result["io_lower_bound_s"] == 0 and "optimized_vs_lower_bound" not in result
    assert [s["step"] for s in result["steps"]] == list(e2e.STEPS)
    assert result["steps"][0]["seconds"] == result["naive_s"]
    assert result["steps"][-1]["seconds"] == result["optimized_s"]
    for step in e2e.STEPS:
        mine = [(done, total) for m, done, total in seen if m == step]
        assert mine[0] == (0, 3) and mine[-1] == (3, 3)
        assert sorted(mine) == mine
    order = [m for m, _, _ in seen]
    assert order == sorted(order, key=e2e.STEPS.index)  # naive first, one step after the other


@pytest.mark.parametrize("districts", [0, 131])
def test_compare_refuses_districts_the_simulator_lacks(districts: int) -> None:
    with pytest.raises(ConfigError) as info:
        e2e.compare(districts=districts, latency_ms=0, closing_days=2, concurrency=1)
    assert info.value.field == "districts"


def test_targets_name_fields_of_their_suite_and_judge_values() -> None:
    # the pages suite is written by tests/dashboard/test_e2e_pages.py, not `recon bench`
    written = {**FIELDS, PAGES_SUITE: ("slowest_page_s", "slowest_load_s")}
    assert set(TARGETS) == set(written)
    for suite, targets in TARGETS.items():
        assert set(targets) <= set(written[suite])
    assert Target(">=", 10).met(10) and not Target(">=", 10).met(9.99)
    assert Target("<", 5).met(4.9) and not Target("<", 5).met(5)
    assert str(Target("<=", 1.3)) == "<= 1.3"


def test_each_step_adds_one_optimization_through_the_settings() -> None:
    base = Settings()
    parts = [step_settings(base, step, "x.db").storage.parts() for step in e2e.STEPS]
    assert parts[0] == frozenset() and parts[-1] == frozenset(OPTIMIZATIONS)
    assert [len(p) for p in parts] == [0, 1, 2, 3, 4]
    assert all(a < b for a, b in zip(parts, parts[1:], strict=False))
    assert base.with_values("storage", mode="naive").storage.parts() == frozenset()
    with pytest.raises(ConfigError):
        base.with_values("storage", optimizations="concurrency,turbo")


def monitor_run(tmp_path: Path, name: str, url: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    assert main(["bench", "--suite", "monitor", "--quick", "--json", str(out), "--db", url]) == 0
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_against_a_stored_run_exits_1_naming_a_targeted_figure_that_got_worse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'against.db'}"
    first, second = monitor_run(tmp_path, "a", url), monitor_run(tmp_path, "b", url)
    worse = dict(second)
    worse["monitor"] = {
        **second["monitor"],
        "overhead_vs_prometheus": first["monitor"]["overhead_vs_prometheus"] * 100,
    }
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    capsys.readouterr()

    argv = ["bench", "--db", url, "--against", str(tmp_path / "a.json")]
    assert main([*argv, "--from", str(tmp_path / "worse.json")]) == 1
    shown = capsys.readouterr().out
    assert "regression" in shown and "monitor.overhead_vs_prometheus" in shown

    better = {**worse, "monitor": {**worse["monitor"], "overhead_vs_prometheus": 1e-6}}
    (tmp_path / "better.json").write_text(json.dumps(better))
    assert main([*argv, "--from", str(tmp_path / "better.json")]) == 0
    assert "better" in capsys.readouterr().out

    # the stored rows by id: the second made worse in the database
    storage = open_storage(StorageSettings(db_url=url))
    try:
        with storage.transaction() as conn:
            conn.execute(
                update(bench_results)
                .where(bench_results.c.id == 2)
                .values(result=json.dumps(worse["monitor"]))
            )
    finally:
        storage.close()
    assert main(["bench", "--db", url, "--against", "1", "--from", "2"]) == 1
    assert "monitor.overhead_vs_prometheus" in capsys.readouterr().out


def test_against_refuses_runs_of_another_size_and_unknown_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sizes.db'}"
    report = monitor_run(tmp_path, "a", url)
    (tmp_path / "full.json").write_text(json.dumps({**report, "quick": False}))
    assert (
        main(["bench", "--db", url, "--against", str(tmp_path / "full.json"), "--from", "1"]) == 2
    )
    assert main(["bench", "--db", url, "--against", "99", "--from", "1"]) == 2


def test_against_moves_only_beyond_both_spreads() -> None:
    before = {
        "monitor": {"timed_op_ns": 100.0, "timed_op_ns_spread": 10.0, "overhead_vs_prometheus": 1.0}
    }
    near = {
        "monitor": {"timed_op_ns": 115.0, "timed_op_ns_spread": 10.0, "overhead_vs_prometheus": 1.1}
    }
    far = {
        "monitor": {"timed_op_ns": 150.0, "timed_op_ns_spread": 10.0, "overhead_vs_prometheus": 1.5}
    }
    assert {m.verdict for m in against.compare(before, near)} == {"same"}
    moved = {m.field: m for m in against.compare(before, far)}
    assert moved["timed_op_ns"].verdict == "moved" and not moved["timed_op_ns"].regression
    assert moved["overhead_vs_prometheus"].verdict == "worse"
    assert moved["overhead_vs_prometheus"].regression
    assert "timed_op_ns_spread" not in moved
