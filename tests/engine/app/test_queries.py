"""The read models, on a month reconciled by the engine in a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from engine import settings as settings_mod
from engine.app import queries
from engine.app.console import Console
from engine.app.months import MonthStatus, month_status
from engine.clock import FakeClock
from engine.domain.models import ALL_METRICS, month_of
from engine.errors import ConfigError, NotFoundError
from engine.monitor.advice import Bottleneck, Recommendation
from engine.store.schema import bench_results

MONTH = "2025-06"
DISTRICTS = ["1", "F"]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A console whose database holds June 2025 reconciled for two districts."""
    url = f"sqlite:///{tmp_path_factory.mktemp('queries') / 'recon.db'}"
    c = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": url}}))
    c.start_batch(MONTH, districts=DISTRICTS)
    c.batch.run(until_idle=True)
    yield c
    c.close()


def test_months_offer_months_with_runs_and_recent_calendar_months(console: Console) -> None:
    months = queries.months(console)
    day = console.clock.now().date().replace(day=1)
    recent = set()
    for _ in range(queries.MONTHS_BACK):
        day = (day - timedelta(days=1)).replace(day=1)
        recent.add(month_of(day))
    assert set(months) == recent | {MONTH}
    assert months == sorted(months, reverse=True)
    assert queries.default_month(console) == MONTH


def test_default_month_is_a_month_that_has_ended(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recon.db'}"
    clock = FakeClock(datetime(2025, 7, 10, tzinfo=UTC))
    c = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": url}}), clock=clock)
    try:
        assert queries.default_month(c) == "2025-06"  # no runs: the month that just ended
        c.storage.create_run("2025-03", ["1"], mode="optimized", source="sim")
        assert queries.default_month(c) == "2025-03"
        c.storage.create_run("2025-07", ["1"], mode="optimized", source="sim")  # an old bug's
        assert queries.default_month(c) == "2025-03"
    finally:
        c.close()


def test_final_figures_have_one_row_per_district_and_every_metric(console: Console) -> None:
    figures = queries.final_figures(console, MONTH)
    assert figures.columns == (*queries.FINAL_COLUMNS, *ALL_METRICS)
    assert [r["district"] for r in figures.rows] == DISTRICTS
    snaps = console.month_end(MONTH)
    for row in figures.rows:
        assert row["status"] == "completed" and row["reason"]
        assert row["final_as_of"] == snaps[row["district"]].as_of
        assert {m: row[m] for m in ALL_METRICS} == dict(snaps[row["district"]].metrics)


def test_final_csv_is_the_figures_as_text(console: Console) -> None:
    rows = list(csv.DictReader(io.StringIO(queries.final_csv(console, MONTH))))
    figures = queries.final_figures(console, MONTH)
    assert list(rows[0]) == list(figures.columns)
    for text, row in zip(rows, figures.rows, strict=True):
        assert text["final_as_of"] == row["final_as_of"].isoformat()
        assert float(text["membership"]) == row["membership"]
        assert "." not in text["clubs"]  # counts as whole numbers
    with pytest.raises(NotFoundError, match="no jobs yet"):
        queries.final_csv(console, "2024-01")


def test_close_view_counts_districts_and_their_progress(console: Console) -> None:
    view = queries.close_view(console, MONTH)
    assert view.total == 2 and view.counts == {
        **dict.fromkeys(queries.DISTRICT_STATES, 0),
        "completed": 2,
    }
    assert view.finished and not view.live and view.percent_finalized == 100.0
    assert view.running_batch is None and view.status is MonthStatus.CLOSED
    assert month_status(console, MONTH) is MonthStatus.CLOSED
    assert view.final_as_of == max(r["final_as_of"] for r in view.districts)
    row = view.districts[0]
    assert row["district"] == "1" and row["reason"] == "closing-ended"
    assert row["eta"] is None, "a finished district has no estimate"
    assert row["window_days"] >= 30, "June's window"
    assert 0 <= row["stable_days"] <= row["stable_required"] == 3


def test_change_matrix_is_district_by_day(console: Console) -> None:
    matrix = queries.change_matrix(console, MONTH)
    assert matrix.districts == DISTRICTS
    assert matrix.days == sorted(matrix.days)
    assert all(len(row) == len(matrix.days) for row in matrix.kinds + matrix.details)
    assert {k for row in matrix.kinds for k in row} <= {*queries.CHANGE_KINDS, None}
    assert [row[0] for row in matrix.kinds] == ["first snapshot", "first snapshot"]
    significant = [
        (k, d)
        for kinds, details in zip(matrix.kinds, matrix.details, strict=True)
        for k, d in zip(kinds, details, strict=True)
    ]
    assert all((k == "significant") == bool(d) for k, d in significant)
    assert any(k == "significant" for k, _ in significant)


def test_timeline_view_has_every_metric_and_the_significant_days(console: Console) -> None:
    job = console.jobs(MONTH)[0]
    view = queries.timeline_view(console, job.id)
    entries = console.timeline(job.id)
    assert set(view.series) == set(ALL_METRICS)
    assert len(view.series["membership"]) == sum("membership" in e.metrics for e in entries)
    assert view.significant_days == [e.as_of for e in entries if e.significant]
    assert len(view.entries) == len(entries)
    assert view.telling_metrics[0] in ALL_METRICS
    changed = [e for e in view.entries if e["changes"]]
    assert changed and "→" in changed[0]["changes"]


def test_batch_views(console: Console) -> None:
    history = queries.batch_history(console)
    assert history[0]["status"] == "finished" and history[0]["succeeded"] == 2
    assert history[0]["percent"] == 100.0
    view = queries.batch_view(console, history[0]["batch"])
    assert view.progress is not None and not view.live and view.percent == 100.0
    assert sorted(i["district"] for i in view.items) == DISTRICTS
    assert all(i["attempts"] == 1 and i["outcome"] == "closing-ended" for i in view.items)


def test_cache_views_and_what_if(console: Console) -> None:
    queries.close_view(console, MONTH)
    rows = queries.cache_rows(console)
    assert [r["layer"] for r in rows][-1] == "total"
    assert rows[-1]["hits"] + rows[-1]["misses"] > 0
    traced = queries.traced_caches(console)
    assert {"storage cache", "source day summaries", "source row memo"} <= set(traced)
    assert {n for n in traced if n.startswith("read cache: ")} == {
        f"read cache: {layer}" for layer in queries.LAYERS
    }
    memo = queries.what_if(console, "source row memo", origin="work", ttls="60000, 300000")
    assert memo.refused is None and memo.reads >= queries.MIN_TRACE_READS
    assert memo.origins.get("work", 0) >= memo.reads  # the month-end work read them
    sizes = sorted({r.max_size for r in memo.rows})
    assert len(sizes) == queries.WHAT_IF_POINTS and sizes[-1] == memo.keys
    biggest = [r for r in memo.rows if r.max_size == memo.keys]
    assert all(0 < (r.hit_rate or 0) <= 1 and r.accesses == memo.reads for r in biggest)
    assert {r.ttl_ms for r in memo.rows} == {60_000, 300_000}
    typed = queries.what_if(console, "source row memo", sizes="5, 50", ttls="60000")
    assert [r.max_size for r in typed.rows] == [5, 50]
    few = queries.what_if(console, "read cache: config")
    assert few.rows == [] and few.reads < queries.MIN_TRACE_READS
    assert few.refused is not None and "Run a batch" in few.refused
    assert str(queries.MIN_TRACE_READS) in few.refused
    with pytest.raises(ConfigError, match="whole numbers"):
        queries.what_if(console, "storage cache", sizes="5, lots")
    with pytest.raises(ConfigError, match="no such cache"):
        queries.what_if(console, "no such cache")


def test_latency_series_averages_history_per_operation(console: Console) -> None:
    console.monitor.flush()  # writes the current interval
    rows = queries.latency_series(console, 3600)
    assert rows and {"at", "operation", "p50_ms", "p95_ms", "calls"} <= set(rows[0])
    top = {s.operation for s in console.monitor.stats(3600)[:8]}
    assert {r["operation"] for r in rows} <= top
    assert all(r["calls"] > 0 for r in rows)


def test_bench_history_lists_stored_results(console: Console) -> None:
    result = {"naive_s": 10.0, "optimized_s": 1.0, "speedup": 10.0}
    row = {"created_at": console.clock.now(), "suite": "e2e", "quick": True}
    console.storage.write(bench_results, [{**row, "result": json.dumps(result)}])
    found = queries.bench_history(console)[0]
    assert found["suite"] == "e2e" and found["quick"] and found["result"] == result
    assert found["figures"] == "speedup 10, naive_s 10, optimized_s 1"  # quick: not judged


def test_bench_history_puts_targets_first_with_their_verdict(console: Console) -> None:
    result = {"write_row_commit_per_s": 2000.0, "write_speedup": 54.3, "read_speedup": 9.2}
    row = {"created_at": console.clock.now(), "suite": "storage", "quick": False}
    console.storage.write(bench_results, [{**row, "result": json.dumps(result)}])
    assert queries.bench_history(console)[0]["figures"] == (
        "write_speedup 54.3 (>= 50: met), read_speedup 9.2 (>= 10: missed), "
        "write_row_commit_per_s 2000"
    )


def test_settings_rows_hide_secrets() -> None:
    settings = settings_mod.load(
        env={"RECON_DB_URL": "postgresql://recon:s3cret@db/recon", "RECON_API_TOKEN": "t0k"}
    )
    shown = {(r["group"], r["field"]): r for r in queries.settings_rows(settings)}
    assert "s3cret" not in shown["storage", "db_url"]["value"]
    assert shown["storage", "db_url"]["value"] == "postgresql://recon:***@db/recon"
    assert shown["api", "token"]["value"] == "(set)"
    assert shown["batch", "max_concurrent_jobs"]["range"] == "1 – 20"


def test_queries_refuse_bad_months(console: Console) -> None:
    with pytest.raises(ConfigError, match="YYYY-MM"):
        queries.close_view(console, "2025-6")


def test_operations_view_sums_calls_and_names_the_slowest(console: Console) -> None:
    view = queries.operations_view(console, 3600)
    assert view.rows and view.calls == sum(r["calls"] for r in view.rows)
    assert view.failures == sum(r["failures"] for r in view.rows)
    slowest = max(view.rows, key=lambda r: r["p95_ms"])
    assert (view.slowest, view.slowest_p95_ms) == (slowest["operation"], slowest["p95_ms"])
    assert all(isinstance(r["errors"], str) for r in view.rows)


def test_advice_turns_the_monitor_report_into_items(console: Console) -> None:
    found = queries.advice(console, 3600)
    for item in [*found.bottlenecks, *found.recommendations]:
        assert item.level in ("high", "medium", "low") and item.label and item.message


def test_advice_items_show_the_figures_behind_a_bottleneck() -> None:
    bottleneck = Bottleneck(
        operation="storage.write",
        rule="slow_p95",
        severity="high",
        message="p95 is slow",
        values={"p95_ms": 12.345678},
        recommendation="Batch the writes.",
    )
    item = queries._bottleneck_cards([bottleneck])[0]
    assert item.label == "HIGH" and "**storage.write**" in item.message
    assert item.detail == "Batch the writes."
    assert item.rows == [{"operation": "storage.write", "severity": "high", "p95_ms": 12.3457}]
    advice = Recommendation(category="cache", priority="low", message="Raise maxSize.", values={})
    assert queries._recommendation_item(advice).label == "LOW · cache"


def test_comparison_view_fills_the_charts_from_the_key_templates() -> None:
    result = {"speedup": 3.0, "naive_s": 3.0, "optimized_s": 1.0, "checks": 40}
    result |= {"naive_db_roundtrips": 900, "optimized_db_roundtrips": 40}
    view = queries.comparison_view(result)
    assert (view.speedup, view.naive_s, view.optimized_s, view.checks) == (3.0, 3.0, 1.0, 40)
    assert [c.title for c in view.charts] == [t for t, _ in queries.COMPARISON_CHARTS]
    assert [c.values for c in view.charts] == [(3.0, 1.0), (900, 40), None]
    assert queries.comparison_view({}).speedup == 0


def test_latest_comparison_skips_results_of_other_benchmarks() -> None:
    rows = [{"id": 3, "result": {"read_speedup": 9.0}}, {"id": 2, "result": {"speedup": 4.0}}]
    assert queries.latest_comparison(rows) == rows[1]
    assert queries.latest_comparison(rows[:1]) is None


# --- close progress: every district in one state, a stopped month not closed -------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[Console]:
    """May 2025 for four districts: 1 completed, 2 cancelled, 3 failed, F pending."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    c = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": url}}))
    jobs = {
        j.district: j
        for j in c.reconciler.start_month("2025-05", ["1", "2", "3", "F"], mode="optimized")
    }
    c.reconciler.replay(jobs["1"].id)
    for district in ("2", "3"):  # checked for a few days, then stopped
        c.reconciler.replay(jobs[district].id, until=date(2025, 6, 3))
    c.cancel_job(jobs["2"].id)
    c.reconciler.fail(jobs["3"].id, "source unreachable")
    yield c
    c.close()


def test_close_view_puts_every_district_in_exactly_one_state(mixed: Console) -> None:
    view = queries.close_view(mixed, "2025-05")
    assert list(view.counts) == list(queries.DISTRICT_STATES)
    assert sum(view.counts.values()) == view.total == 4
    assert {s: n for s, n in view.counts.items() if n} == {
        "pending": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert [r["state"] for r in view.districts] == ["failed", "cancelled", "pending", "completed"]
    assert view.percent_finalized == 25.0, "only completed districts have final figures"
    assert view.status is MonthStatus.OPEN and view.live
    assert view.days_since_month_end == (mixed.today() - date(2025, 5, 31)).days


def test_a_month_with_cancelled_or_failed_districts_is_not_closed(mixed: Console) -> None:
    pending = next(j for j in mixed.jobs("2025-05") if j.district == "F")
    mixed.cancel_job(pending.id)
    view = queries.close_view(mixed, "2025-05")
    assert view.status is MonthStatus.INCOMPLETE and not view.finished and not view.live
    assert view.unfinished == 3 and view.percent_finalized == 25.0
    assert mixed.month_progress("2025-05").percent_finalized == 25.0, "the API's figure too"
    assert view.days_since_month_end is None and view.projected_close is None
    rows = {r["district"]: r for r in view.districts}
    assert rows["1"]["window"] == "final" and rows["1"]["window_left"] is None
    assert rows["1"]["stable_days"] == rows["1"]["stable_required"], "a final district is full"
    assert rows["2"]["window"] == rows["3"]["window"] == "–"
    assert rows["3"]["error"] == rows["3"]["outcome"] == "source unreachable"
    assert rows["1"]["outcome"] == rows["1"]["reason"] and rows["2"]["outcome"] is None
    assert month_status(mixed, "2025-05") is MonthStatus.INCOMPLETE


def test_change_matrix_orders_districts_by_state_and_pages(mixed: Console) -> None:
    matrix = queries.change_matrix(mixed, "2025-05")
    assert matrix.districts == ["3", "2", "1"], "failed, cancelled, then completed"
    assert matrix.states == ["failed", "cancelled", "completed"]
    assert matrix.unchecked == ["F"], "a pending district has no row"
    page = matrix.page(1, 2)
    assert (page.districts, page.states, page.days) == (["1"], ["completed"], matrix.days)
    assert page.kinds == matrix.kinds[2:] and page.details == matrix.details[2:]


def test_months_offer_only_months_that_have_ended(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recon.db'}"
    clock = FakeClock(datetime(2025, 7, 10, tzinfo=UTC))
    c = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": url}}), clock=clock)
    try:
        c.storage.create_run("2030-01", ["1"], mode="optimized", source="sim")  # an old bug's
        found = queries.months(c)
        assert found[0] == "2025-06" and "2025-07" not in found and "2030-01" not in found
        assert len(found) == queries.MONTHS_BACK
    finally:
        c.close()


def test_throughput_bars_span_the_seconds_their_items_finished_in() -> None:
    """A bar is centred on its bucket and as wide as it: items finished at 0.5 s and
    1.5 s are drawn over 0-1 s and 1-2 s (a bar at the bucket's end read a second late)."""
    start = datetime(2025, 7, 1, tzinfo=UTC)
    finished = [start + timedelta(seconds=s) for s in (0.5, 1.5, 1.6, 3.9)]
    bars = queries._throughput(start, finished, buckets=4)
    assert [b["width_s"] for b in bars] == [1.0] * 4
    assert [(b["at"] - start).total_seconds() for b in bars] == [0.5, 1.5, 2.5, 3.5]
    assert [b["items_per_s"] for b in bars] == [1.0, 2.0, 0.0, 1.0]
    for t in finished:
        (bar,) = [b for b in bars if abs((t - b["at"]).total_seconds()) <= b["width_s"] / 2]
        assert bar["items_per_s"] > 0
