"""Each dashboard page in Streamlit's AppTest, on a real SQLite database in tmp_path."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import settings as settings_mod
from engine.app import queries
from engine.app.console import Console, open_storage
from engine.app.watcher import Watcher
from engine.bench.e2e import STEPS
from engine.cancel import NEVER, CancelToken
from engine.clock import FakeClock, ShiftedClock
from engine.domain.models import ItemState, Snapshot
from engine.monitor.advice import Bottleneck, Severity
from engine.settings import StorageSettings
from engine.sources.sim import DISTRICTS as SIM_DISTRICTS
from engine.store.leases import Holder
from engine.store.schema import bench_results
from engine.store.workers import SqlWorkerStore
from tests.engine.sources.common import DISTRICTS as FOLDER_DISTRICTS
from tests.engine.sources.common import MONTH as FOLDER_MONTH
from tests.engine.sources.common import WARNED, exports_with_code, recon_run

from .conftest import APP, DISTRICTS, MONTH

Open = Callable[[str], AppTest]


def engine() -> Console:
    """The dashboard's engine: the same process, so the same cached instance."""
    return sys.modules["runtime"].get_console()  # type: ignore[no-any-return]


def texts(at: AppTest) -> list[str]:
    kinds = ("markdown", "info", "success", "warning", "error", "caption", "subheader")
    return [str(e.value) for kind in kinds for e in at.get(kind)]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict[str, object]]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def button(at: AppTest, label: str) -> object:
    return next(b for b in at.button if b.label == label)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# --- Close progress ----------------------------------------------------------------------


def test_close_progress_shows_kpis_charts_and_a_districts_timeline(app: Open, populated: str):
    at = app("close")
    assert_clean(at)
    assert at.title[0].value == f"Close progress · {MONTH}"
    found = metrics(at)
    assert found["Completed"] == "3"
    assert found["Finalized"] == "100 %"
    assert found["Failed"] == "0"
    progress = at.dataframe[0].value
    assert sorted(progress["district"]) == sorted(DISTRICTS)
    assert (progress["status"] == "completed").all()
    kinds = {c["data"][0]["type"] for c in charts(at)}
    assert {"pie", "heatmap", "scatter"} <= kinds
    heatmap = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")
    assert sorted(heatmap["data"][0]["y"]) == sorted(DISTRICTS)

    district = next(s for s in at.selectbox if s.label == "District")
    district.select("F").run()
    assert_clean(at)
    timeline = next(c for c in charts(at) if "District F" in c["layout"]["title"]["text"])
    assert timeline["data"][0]["x"], "the timeline chart has points"
    entries = at.dataframe[1].value
    assert len(entries) > 1 and "changes" in entries.columns


def test_close_progress_empty_state_starts_a_month_end_run(app: Open, db_url: str):
    at = app("close")
    assert_clean(at)
    assert any("No month-end run" in t for t in texts(at))
    button(at, "Start month-end run").click().run()
    assert_clean(at)
    progress = at.dataframe[0].value
    assert len(progress) == len(SIM_DISTRICTS), "every district of the source has a job"
    assert at.get("progress"), "the running batch's progress bar shows"
    month = next(s for s in at.sidebar.selectbox if s.label == "Month").value
    assert len(engine().jobs(month)) == len(SIM_DISTRICTS)


# --- Batch runs ------------------------------------------------------------------------------


def start_batch(at: AppTest, *, districts: list[str], concurrency: int = 2) -> AppTest:
    next(t for t in at.text_input if t.label == "Month (YYYY-MM)").set_value(MONTH)
    chooser = next(m for m in at.multiselect if m.label == "Districts")
    chooser.set_value(districts)
    next(n for n in at.number_input if n.label == "Concurrency").set_value(concurrency)
    return button(at, "Start").click().run()


def test_batch_start_shows_clamping_runs_to_completion_and_jobs_appear(app: Open, db_url: str):
    at = app("batch")
    assert_clean(at)
    at = start_batch(at, districts=["1", "2"], concurrency=50)
    assert_clean(at)
    notes = [w.value for w in at.warning]
    assert any("maxConcurrentJobs 50 clamped to 20" in n for n in notes), notes
    assert any("limited to the runner's" in n for n in notes), notes

    engine().batch.run(until_idle=True)  # returns when every batch is finished
    at.run()
    assert_clean(at)
    assert "**100 %**" in at.get("progress")[0].proto.text
    assert metrics(at)["Succeeded"] == "2"
    items = at.dataframe[0].value
    assert sorted(items["district"]) == ["1", "2"]
    assert (items["status"] == "succeeded").all()
    history = at.dataframe[1].value
    assert history.iloc[0]["succeeded"] == 2
    assert {j.district for j in engine().jobs(MONTH)} == {"1", "2"}
    month = next(s for s in at.sidebar.selectbox if s.label == "Month")
    assert month.value == MONTH, "the sidebar follows the month just started"


def hold_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fetch of the dashboard's engine waits until its batch item is cancelled, so a
    batch started now is still running when the test looks for its Cancel button."""
    source = engine().source
    fetch = source.fetch

    def held(
        district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> Snapshot:
        cancel.wait(60)  # raises once the item is cancelled; bounded should the test fail
        return fetch(district, month, collection_date, cancel)

    monkeypatch.setattr(source, "fetch", held)


def test_batch_cancel_and_resume_buttons(app: Open, db_url: str, monkeypatch):
    at = app("batch")
    hold_fetches(monkeypatch)
    at = start_batch(at, districts=[], concurrency=1)
    assert_clean(at)
    button(at, "Cancel batch").click().run()
    assert_clean(at)
    engine().batch.run(until_idle=True)
    at.run()
    assert at.dataframe[1].value.iloc[0]["status"] == "cancelled"
    button(at, "Resume interrupted batches").click().run()
    assert any("Nothing to resume" in t for t in texts(at))


def test_a_batch_of_another_process_is_cancelled_from_here(app: Open, db_url: str):
    overrides = {"storage": {"db_url": db_url}, "source": {"latency_ms": 1000}}  # runs for minutes
    other = Console(settings_mod.load(env={}, overrides=overrides))  # a `recon run` beside
    try:
        batch_id = other.start_batch(MONTH, districts=list(SIM_DISTRICTS[:8])).batch_id
        other.batch.start()
        at = app("batch")
        assert f"Batch **{batch_id}**" in texts(at)[0] and "running" in texts(at)[0]
        button(at, "Cancel batch").click().run()
        assert_clean(at)
        other.batch.run(until_idle=True)  # returns once the cancel reached it
        assert other.batch.progress(batch_id).cancelled > 0
        at.run()
        assert any(f"Batch **{batch_id}**" in t and "cancelled" in t for t in texts(at))
    finally:
        other.close()


def test_close_progress_names_the_process_that_works_the_month(app: Open, db_url: str):
    overrides = {"storage": {"db_url": db_url}, "source": {"latency_ms": 100}}
    other = Console(settings_mod.load(env={}, overrides=overrides))  # a `recon run` beside
    try:
        batch_id = other.start_batch(MONTH, districts=list(SIM_DISTRICTS[:8])).batch_id
        at = app("close")
        assert_clean(at)
        shown = [i.value for i in at.info if "Worked by another process" in i.value]
        assert shown and other.leases.holder.host in shown[0], [i.value for i in at.info]
        assert not [b for b in at.button if b.label == "Continue month-end run"]
        other.batch.cancel(batch_id)
        other.batch.run(until_idle=True)  # its batch ends: the month is nobody's
        at.run()
        assert not [i for i in at.info if "Worked by another process" in i.value]
    finally:
        other.close()


def test_batch_page_lists_workers_alive_and_lost(app: Open, db_url: str, monkeypatch):
    monkeypatch.setenv("RECON_BATCH_STALL_TIMEOUT_S", "3600")  # lost: silent for an hour
    at = app("batch")
    assert any("No `recon worker` runs" in t for t in texts(at))
    now = engine().clock.now()  # the dashboard's clock says who is lost
    workers = SqlWorkerStore(engine().storage)
    alive = workers.register("host-a", 111, 2, now)
    workers.beat(alive, now, [(3, 1), (3, 2)], 5)
    workers.register("host-b", 222, 2, now - timedelta(hours=2))
    at.run()
    assert_clean(at)
    shown = at.dataframe[-1].value
    assert list(shown["host"]) == ["host-a", "host-b"]
    assert list(shown["state"]) == ["alive", "lost"]
    assert list(shown.iloc[0]["running"]) == ["3/1", "3/2"]


def test_batch_form_refuses_a_bad_month_with_a_clear_message(app: Open, db_url: str):
    at = app("batch")
    next(t for t in at.text_input if t.label == "Month (YYYY-MM)").set_value("2025-13")
    button(at, "Start").click().run()
    assert not at.exception
    assert "expected YYYY-MM" in at.error[0].value
    assert "Correct the value" in at.error[0].value


# --- Cache -------------------------------------------------------------------------------------


def test_cache_page_clears_caches_to_zero(app: Open, populated: str):
    app("close")  # reading the month fills the cache layers and the storage cache
    at = app("cache")
    assert_clean(at)
    entries = metrics(at)["Entries"]
    assert int(entries.split(" / ")[0]) > 0, entries
    assert int(metrics(at)["Storage cache entries"]) > 0
    layers = at.dataframe[0].value
    assert set(layers["layer"]) >= {"jobs", "timelines", "status", "total"}

    at.selectbox(key="clear_target").select("Everything (cache layers and storage cache)")
    button(at, "Clear caches").click().run()
    assert any("The next reads go to the database" in w.value for w in at.warning)
    button(at, "Yes, clear").click().run()
    assert_clean(at)
    assert any("entries removed" in s.value for s in at.success)
    assert metrics(at)["Entries"].startswith("0 / ")
    assert metrics(at)["Storage cache entries"] == "0"
    assert (at.dataframe[0].value["size"] == 0).all()
    assert engine().cache.stats().total.size == 0


def test_cache_page_tunes_a_layer_and_simulates(app: Open, populated: str):
    app("close")
    at = app("cache")
    at.selectbox(key="tune_layer").select("jobs").run()
    next(n for n in at.number_input if n.label == "maxSize").set_value(5_000_000)
    button(at, "Apply").click().run()
    assert_clean(at)
    assert any("clamped" in w.value for w in at.warning)
    assert engine().cache.config().layers["jobs"].max_size == 1_000_000

    button(at, "Simulate").click().run()  # the storage cache of a dashboard that did no work
    assert_clean(at)
    assert any(
        "Run a batch" in i.value and str(queries.MIN_TRACE_READS) in i.value for i in at.info
    )
    assert not [c for c in charts(at) if "Hit rate by size" in c["layout"]["title"]["text"]]

    engine().start_batch(MONTH, districts=["1", "2"])
    engine().batch.run(until_idle=True)  # the month-end work: it reads the source's row memo
    at.selectbox(key="wi_cache").select("source row memo")
    at.selectbox(key="wi_origin").select("work")
    button(at, "Simulate").click().run()
    assert_clean(at)
    curve = next(c for c in charts(at) if "Hit rate by size" in c["layout"]["title"]["text"])
    assert "source row memo" in curve["layout"]["title"]["text"]
    assert len(curve["data"]) == 2, "one curve per TTL"
    assert curve["layout"]["xaxis"].get("type") != "log"
    assert curve["layout"]["yaxis"]["tickformat"] == ".0%"
    assert any("recorded reads by the engine's work" in t for t in texts(at))


def test_cache_page_runs_a_viewer_load_and_shows_its_figures(app: Open, populated: str):
    app("close")
    at = app("cache")
    next(n for n in at.number_input if n.label == "Readers").set_value(3)
    next(n for n in at.number_input if n.label == "Duration (s)").set_value(1)
    button(at, "Start").click().run()
    assert_clean(at)
    task = next(t for t in engine().tasks.recent() if t.name == "viewer load")
    done = engine().tasks.wait(task.task_id, timeout_s=60)  # the readers are engine threads
    assert done.error is None and done.result["readers"] == 3
    at.run()
    assert_clean(at)
    found = metrics(at)
    assert found["Reads done"] == f"{done.result['reads']:,}" != "0"
    assert found["Read cache hit rate"].endswith("%")
    assert any("One reader alone" in t and "without it" in t for t in texts(at))
    assert any("Last viewer load: **3 readers**" in t for t in texts(at))


# --- Performance -------------------------------------------------------------------------------


def test_performance_page_shows_operations_and_advice(app: Open, populated: str):
    app("close")  # engine operations to measure
    at = app("performance")
    assert_clean(at)
    operations = at.dataframe[0].value
    assert any(op.startswith("storage.") for op in operations["operation"])
    assert (operations["calls"] > 0).all()
    headings = texts(at)
    assert "Bottlenecks" in headings and "Recommendations" in headings
    next(s for s in at.selectbox if s.label == "Window").select("1 hour").run()
    assert_clean(at)
    assert len(at.dataframe[0].value) >= len(operations)


# --- Before / after ----------------------------------------------------------------------------


E2E_RESULT = {
    "naive_s": 12.0,
    "optimized_s": 1.0,
    "speedup": 12.0,
    "checks": 1300,
    "naive_db_roundtrips": 9000,
    "optimized_db_roundtrips": 400,
    "naive_peak_rss_mb": 120.0,
    "optimized_peak_rss_mb": 90.0,
}


def store_bench(db_url: str, *runs: tuple[str, bool, dict[str, object]]) -> None:
    """Store (suite, quick, result) runs in order, oldest first."""
    storage = open_storage(StorageSettings(db_url=db_url, mode="naive"))
    rows = [
        {"created_at": datetime.now(UTC), "suite": s, "quick": q, "result": json.dumps(r)}
        for s, q, r in runs
    ]
    for row in rows:
        storage.write(bench_results, [row])
    storage.close()


def table_with(at: AppTest, column: str) -> object:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_before_after_lists_stored_results_with_their_charts(app: Open, db_url: str):
    store_bench(db_url, ("e2e", False, E2E_RESULT))

    at = app("before_after")
    assert_clean(at)
    stored = table_with(at, "suite")
    assert list(stored["suite"]) == ["e2e"]
    assert list(stored["size"]) == ["full"]
    figures = table_with(at, "field")
    speedup = figures[figures["field"] == "speedup"].iloc[0]
    assert (speedup["value"], speedup["target"], speedup["met"]) == ("12", ">= 10", "yes")
    assert metrics(at)["Speed-up"] == "12.0×"
    bars = [c for c in charts(at) if c["data"][0]["type"] == "bar"]
    assert [b["data"][0]["y"] for b in bars] == [[12.0, 1.0], [9000, 400], [120.0, 90.0]]
    # lower is better in each: the optimized bar is the green one
    assert {tuple(b["data"][0]["marker"]["color"]) for b in bars} == {("#afb8c1", "#2da44e")}


def test_before_after_headline_is_the_latest_full_run_never_a_quick_one(app: Open, db_url: str):
    steps = [
        {"step": s, "seconds": t} for s, t in zip(STEPS, (6.0, 2.0, 1.8, 1.2, 0.5), strict=True)
    ]
    quick = {**E2E_RESULT, "speedup": 2.8, "naive_s": 2.8, "steps": steps}
    full = {**E2E_RESULT, "naive_s": 6.0, "optimized_s": 0.5, "steps": steps}
    store_bench(db_url, ("e2e", False, full), ("e2e", True, quick))

    at = app("before_after")
    assert_clean(at)
    headline = next(s.value for s in at.subheader if s.value.startswith("Headline"))
    assert "full-size run (#1" in headline
    speedups = [m.value for m in at.metric if m.label == "Speed-up"]
    assert speedups == ["12.0×", "2.8×"], "the headline first; the newer quick run below it"
    assert any("quick" in e.label and "#2" in e.label for e in at.expander)
    stored = table_with(at, "suite")
    assert list(stored["size"]) == ["quick", "full"]
    waterfall = next(c for c in charts(at) if c["data"][0]["type"] == "waterfall")
    assert waterfall["data"][0]["measure"] == ["absolute"] + ["relative"] * 4 + ["total"]
    assert waterfall["data"][0]["y"][0] == 6.0
    trends = [c for c in charts(at) if c["layout"]["title"]["text"].startswith("e2e.speedup")]
    assert len(trends) == 1 and trends[0]["data"][0]["y"] == [12.0], "full runs only"

    # the quick run's figures are a table, not judged
    at.selectbox(key="bench_figures_of").select(2).run()
    figures = [d.value for d in at.dataframe if "field" in d.value.columns][-1]
    assert set(figures["met"]) == {""}


# --- Settings ----------------------------------------------------------------------------------


def choose_setting(at: AppTest, label: str, value: str) -> AppTest:
    at.selectbox(key="setting_choice").select(label).run()
    next(t for t in at.text_input if t.label == "New value").set_value(value)
    return button(at, "Apply").click().run()


def test_settings_page_refuses_invalid_input_and_clamps(app: Open, db_url: str):
    at = app("settings")
    assert_clean(at)
    table = at.dataframe[0].value
    assert {"seed", "value", "default", "range"} <= set(table.columns)
    assert "stabilityPeriodDays" in set(table["seed"])

    at = choose_setting(at, "batch.max_concurrent_jobs (maxConcurrentJobs)", "lots")
    assert not at.exception
    assert "expected int" in at.error[0].value

    at = choose_setting(at, "batch.max_concurrent_jobs (maxConcurrentJobs)", "50")
    assert_clean(at)
    assert any("clamped to 20" in w.value for w in at.warning)
    assert any("Batch runs form" in s.value for s in at.success)
    at.switch_page("app_pages/batch.py").run()
    assert next(n for n in at.number_input if n.label == "Concurrency").value == 20


def test_settings_page_applies_cache_settings_to_the_running_engine(app: Open, db_url: str):
    at = choose_setting(app("settings"), "cache.ttl_ms (ttlMs)", "60000")
    assert_clean(at)
    assert any("applied now to every cache layer" in s.value for s in at.success)
    layers = engine().cache.config().layers
    assert {layer.ttl_ms for layer in layers.values()} == {60000}

    # Restart-only settings say how to set them and have no Apply button (issue #19).
    at.selectbox(key="setting_choice").select("storage.batch_size (batchSize)").run()
    assert any("RECON_STORAGE_BATCH_SIZE" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Apply"]


def test_before_after_runs_a_comparison_in_the_background(app: Open, db_url: str):
    at = app("before_after")
    assert_clean(at)
    for label, value in (
        ("Districts", 2),
        ("Latency per fetch (ms)", 0.0),
        ("Closing period (days)", 2),
        ("Concurrency (optimized)", 2),
    ):
        next(n for n in at.number_input if n.label == label).set_value(value)
    button(at, "Run before/after").click().run()
    assert_clean(at)
    task = engine().tasks.recent()[0]
    assert task.total == 2 * len(STEPS), "progress starts with the real total"
    done = engine().tasks.wait(task.task_id)  # the comparison runs on an engine thread
    assert done.error is None and done.state == "succeeded"
    at.run()
    assert_clean(at)
    assert any(s.value.startswith("This run (quick") for s in at.subheader)
    assert metrics(at)["Speed-up"].endswith("×")
    assert len([c for c in charts(at) if c["data"][0]["type"] == "bar"]) >= 3
    stored = table_with(at, "suite")
    assert list(stored["suite"]) == ["e2e-dashboard"], "the run is stored with past results"
    assert list(stored["size"]) == ["quick"]


def test_invalid_settings_show_what_to_fix_instead_of_a_traceback(app: Open, monkeypatch):
    monkeypatch.setenv("RECON_BATCH_MAX_CONCURRENT_JOBS", "many")
    at = app("close")
    assert not at.exception
    assert "The engine could not start" in at.error[0].value
    assert "RECON_* environment variables" in at.error[0].value


def test_close_progress_offers_the_final_figures_as_csv(app: Open, populated: str):
    at = app("close")
    assert_clean(at)
    (download,) = [e for e in at.get("download_button") if "final figures" in e.proto.label]
    assert download.proto.label == "Download final figures (CSV)"
    rows = queries.final_csv(engine(), MONTH).splitlines()
    assert len(rows) == 1 + len(DISTRICTS)  # header, then one row per district


def test_close_progress_shows_the_watcher_or_how_to_start_one(
    app: Open, populated: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RECON_TODAY", "2025-07-20")  # June 2025 is the month just ended
    at = app("close")
    assert_clean(at)
    assert "no watcher: start one with `recon watch`" in texts(at)
    # A watcher of another process (`recon watch` elsewhere): its own console and holder.
    settings = settings_mod.load(env={}, overrides={"storage": {"db_url": populated}})
    console = Console(settings, clock=ShiftedClock(date(2025, 7, 20)))
    watcher = Watcher(console, holder=Holder("elsewhere", "box-7", 4242))
    try:
        assert watcher.claim(threading.Event(), wait=False)
        watcher.tick(every_s=3600)  # June is closed already: nothing to check
        shown = " ".join(texts(at.run()))
        assert "watcher on box-7 pid 4242, source sim: last tick 2025-07-20" in shown
        # an hour later: on the next day when the clock's time of day is past 23:00
        ticks = re.search(r"last tick (\S+ \S+) UTC, next tick (\S+ \S+) UTC", shown)
        assert ticks, shown
        last, after = (datetime.fromisoformat(t) for t in ticks.groups())
        assert after - last == timedelta(hours=1)
    finally:
        watcher.close()
        console.close()
    shown = " ".join(texts(at.run()))
    assert "no watcher: start one with `recon watch` (the last one ticked at 2025-07-20" in shown


def test_the_default_month_has_ended_and_a_run_stops_at_today(
    app: Open, db_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RECON_TODAY", "2025-07-03")  # June 2025 is closing
    at = app("close")
    assert_clean(at)
    assert at.title[0].value == "Close progress · 2025-06"
    button(at, "Start month-end run").click().run()
    assert_clean(at)
    engine().batch.run(until_idle=True)
    at.run()
    assert_clean(at)
    jobs = engine().jobs("2025-06")
    assert len(jobs) == len(SIM_DISTRICTS)
    assert {j.last_check_date for j in jobs} == {date(2025, 7, 3)}, "nothing after today"
    assert any("still open on the last day checked" in w.value for w in at.warning)


# --- Issue #19: engineers' pages tell the truth (perf/cache/settings/batch) ----------------------


def new_tab(name: str) -> AppTest:
    """Another browser tab: a new session on the same process (the same cached engine)."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(f"app_pages/{name}.py")
    return at.run()


def test_issue19_fresh_database_raises_no_false_alarm(app: Open, db_url: str):
    for _ in range(3):
        app("close")  # the dashboard's own reads, nothing else
    at = app("performance")
    assert_clean(at)
    badges = [b.proto.label for b in at.get("badge")] if at.get("badge") else []
    assert not any(b.startswith(("HIGH", "MEDIUM")) for b in badges), badges
    found = queries.advice(engine(), 900)
    assert not [b for b in found.bottlenecks if b.level in ("high", "medium")]
    assert not [r for r in found.recommendations if r.level in ("high", "medium")]
    own = queries.operations_view(engine(), 900)
    assert own.own_reads and {r["origin"] for r in own.own_reads} == {"dashboard"}
    assert not any(":" in r["operation"] for r in own.rows), "engine figures exclude them"
    performance_rate = metrics(at)["Cache hit rate"]
    assert metrics(app("cache"))["Hit rate"] == performance_rate, "one definition"


def test_issue19_latency_chart_marks_batches_without_bridging_gaps(app: Open, populated: str):
    at = app("performance")
    next(s for s in at.selectbox if s.label == "Window").select("24 hours").run()
    assert_clean(at)
    chart = next(c for c in charts(at) if "p95 latency" in c["layout"]["title"]["text"])
    assert chart["data"] and all(t.get("connectgaps") is False for t in chart["data"])
    assert len(chart["data"]) <= 6 and not any(":" in t["name"] for t in chart["data"])
    assert "ms" in chart["layout"]["yaxis"]["title"]["text"]
    marks = [a["text"] for a in chart["layout"]["annotations"]]
    assert any("start" in m for m in marks) and any("finished" in m for m in marks), marks


def test_issue19_repeated_findings_collapse_into_one_card() -> None:
    def finding(operation: str, rule: str, severity: Severity) -> Bottleneck:
        return Bottleneck(operation, rule, severity, "m", {}, "r")

    rows = [finding(op, "tail-latency", "medium") for op in ("a", "b", "c")]
    cards = queries._bottleneck_cards([finding("d", "slow-mean", "low"), *rows])
    assert [(c.level, len(c.rows)) for c in cards] == [("medium", 3), ("low", 1)]
    assert "on 3 operations: **a**, **b**, **c**" in cards[0].message


def test_issue19_rare_calls_are_information_not_a_bottleneck(db_url: str):
    clock = FakeClock()
    console = Console(settings_mod.load_traced(), clock=clock)
    try:
        clock.advance(900)  # the whole window observed: six calls in it are rare
        for _ in range(6):
            console.monitor.record("source.fetch", 0.001)
        found = queries.advice(console, 900)
    finally:
        console.close()
    assert not [c for c in found.bottlenecks if "rare-calls" in c.message]
    assert [c.level for c in found.notes if "rare-calls" in c.message] == ["low"]


def test_issue19_cache_page_shows_every_cache_and_no_rate_of_nothing(app: Open, db_url: str):
    at = app("cache")
    assert_clean(at)
    shown = [*metrics(at).values()]
    for frame in at.dataframe:
        shown += [str(v) for v in frame.value.to_numpy().ravel()]
    assert "0.0 %" not in shown and "–" in shown  # 0 of 0 reads
    console = engine()
    console.start_batch(MONTH, districts=["1", "2"])
    console.batch.run(until_idle=True)
    at.run()
    caches = next(f.value for f in at.dataframe if "cache" in f.value.columns)
    by_name = {row["cache"]: row for _, row in caches.iterrows()}
    assert {"storage cache", "source day summaries", "source row memo"} <= set(by_name)
    assert {f"read cache: {layer}" for layer in console.cache.config().layers} <= set(by_name)
    memo = by_name["source row memo"]
    assert memo["hits"] + memo["misses"] > 0 and memo["limit"] > 0


def test_issue19_cache_settings_persist_to_the_settings_file(app: Open, db_url: str, tmp_path):
    at = choose_setting(app("settings"), "cache.max_size (maxSize)", "777")
    assert_clean(at)
    at = app("cache")
    assert any("lost on restart unless saved" in w.value for w in at.warning)
    target = tmp_path / "recon.toml"
    target.write_text("[batch]\nretry_attempts = 4\n")
    next(t for t in at.text_input if t.label == "Settings file").set_value(str(target))
    button(at, "Save to settings file").click().run()
    assert_clean(at)
    assert any("last past a restart" in s.value for s in at.success)
    reloaded = settings_mod.load(target, env={})
    assert reloaded.cache.max_size == 777 and reloaded.batch.retry_attempts == 4


def test_issue19_settings_apply_to_the_whole_process(app: Open, db_url: str, monkeypatch):
    monkeypatch.setenv("RECON_BATCH_RETRY_ATTEMPTS", "4")
    at = choose_setting(app("settings"), "batch.max_concurrent_jobs (maxConcurrentJobs)", "25")
    assert_clean(at)
    notes = [w.value for w in at.warning]
    assert any("clamped to 20 (range 1-20)" in n for n in notes), notes
    assert not any("20.0" in n or "25.0" in n for n in notes), notes
    assert engine().batch.settings.max_concurrent_jobs == 20, "the runner's limit"

    other = new_tab("settings")  # a new tab sees the change, and where each value came from
    table = other.dataframe[0].value  # the first tab: recon
    assert set(table["origin"]) == {"default"}
    rows = {r["field"]: r for r in queries.settings_rows(engine().live_settings)}
    assert (rows["max_concurrent_jobs"]["value"], rows["max_concurrent_jobs"]["origin"]) == (
        "20",
        "changed here",
    )
    assert rows["retry_attempts"]["origin"] == "environment"
    assert rows["db_url"]["origin"] == "environment"
    other.switch_page("app_pages/batch.py").run()
    assert next(n for n in other.number_input if n.label == "Concurrency").value == 20

    for label in ("storage.db_url (dbUrl)", "storage.mode (mode)", "source.source (source)"):
        other.switch_page("app_pages/settings.py").run()
        other.selectbox(key="setting_choice").select(label).run()
        assert any("needs a restart" in i.value for i in other.info), label
        assert not [b for b in other.button if b.label == "Apply"], label


def test_issue19_cancelled_batch_is_not_done_and_is_acknowledged(
    app: Open, db_url: str, monkeypatch
):
    at = app("batch")
    hold_fetches(monkeypatch)
    at = start_batch(at, districts=["1", "2", "3", "4"], concurrency=1)
    assert_clean(at)
    assert at.get("progress"), "the live progress is at the top, in view after Start"
    button(at, "Cancel batch").click().run()
    assert_clean(at)
    assert [t.value for t in at.toast] and "cancelled" in at.toast[0].value
    assert any("cancelled" in s.value for s in at.success)
    engine().batch.run(until_idle=True)
    at.run()
    text = at.get("progress")[0].proto.text
    assert "**100 %**" not in text and "4 cancelled" in text and "(0 of 4 items)" in text, text
    assert metrics(at)["Throughput"] == "–", "no item ran to an end: no rate"
    assert at.dataframe[-1].value.iloc[0]["percent"] == 0

    other = new_tab("batch")  # "Last start" comes from the store, not this tab
    batch_id = engine().batch.list_batches(limit=1)[0].batch_id
    assert any(f"Batch **{batch_id}**" in t for t in texts(other))


def test_issue19_throughput_counts_time_items_ran() -> None:
    from engine.batch.records import AttemptRecord, ItemRecord

    t0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)

    def item(n: int, start_s: float, end_s: float) -> ItemRecord:
        start, end = t0 + timedelta(seconds=start_s), t0 + timedelta(seconds=end_s)
        attempt = AttemptRecord(1, start, end, "succeeded", None)
        return ItemRecord(n, {}, 0, ItemState.SUCCEEDED, None, None, end, (attempt,))

    # two overlapping items over 2 s, then 100 s idle, then one item of 2 s: 3 items in 4 s
    ran = [item(1, 0, 2), item(2, 1, 2), item(3, 102, 104)]
    assert queries._busy_rate(ran) == pytest.approx(3 / 4)


def test_close_progress_warns_of_an_unknown_distinguished_code(
    app: Open, db_url: str, tmp_path: Path
):
    """A folder run whose one export has a club coded ``H``: the warning names the
    district, the file and the code; the districts without one are not listed."""
    name = exports_with_code(tmp_path / "exports")
    only = ",".join(FOLDER_DISTRICTS)
    assert recon_run(tmp_path / "exports", db_url, FOLDER_MONTH, "--districts", only) == 0
    at = app("close")
    assert_clean(at)
    assert at.title[0].value == f"Close progress · {FOLDER_MONTH}"
    (warning,) = [w.value for w in at.warning if "had warnings" in w.value]
    assert "The exports of 1 district had warnings" in warning
    assert f"district {WARNED[0]}: {name}: unknown distinguished status 'H'" in warning
    assert "district 7" not in warning and "district F" not in warning
    assert str(tmp_path) not in warning  # no local path


def test_close_progress_shows_no_export_warning_when_none(app: Open, populated: str):
    at = app("close")
    assert_clean(at)
    assert not [w.value for w in at.warning if "had warnings" in w.value]


# --- Close progress: counts add up, a stopped month is not closed, readable charts -----------


def stop_month(db_url: str, *, done: str, cancelled: str, failed: str) -> None:
    """MONTH with one district completed, one cancelled and one failed (by the engine)."""
    overrides = {"storage": {"db_url": db_url}}
    console = Console(settings_mod.load(env={}, overrides=overrides))
    try:
        runs = console.reconciler.start_month(MONTH, DISTRICTS, mode="optimized")
        jobs = {j.district: j for j in runs}
        console.reconciler.replay(jobs[done].id)
        console.cancel_job(jobs[cancelled].id)
        console.reconciler.fail(jobs[failed].id, "HTTP 503 from the export server")
    finally:
        console.close()


def state_tiles(at: AppTest) -> dict[str, int]:
    found = metrics(at)
    return {s: int(found[s.capitalize()]) for s in queries.DISTRICT_STATES}


def test_close_progress_a_month_with_cancelled_districts_is_not_closed(app: Open, db_url: str):
    stop_month(db_url, done="1", cancelled="2", failed="F")
    at = app("close")
    assert_clean(at)
    tiles = state_tiles(at)
    assert sum(tiles.values()) == len(DISTRICTS)
    assert (tiles["completed"], tiles["cancelled"], tiles["failed"]) == (1, 1, 1)
    found = metrics(at)
    assert found["Finalized"] == "33 %", "cancelled and failed districts are not final"
    assert "Closed: final as of" not in found and found["Not closed"] == "2 not final"
    assert "Days since month end" not in found, "the month is not open"
    assert any(f"{MONTH} is not closed" in w.value for w in at.warning)

    button(at, "Retry failed and run the month again").click().run()
    assert_clean(at)
    engine().batch.run(until_idle=True)
    at.run()
    assert_clean(at)
    assert state_tiles(at)["completed"] == len(DISTRICTS), "the rerun covers the month's own"
    assert metrics(at)["Finalized"] == "100 %" and "Closed: final as of" in metrics(at)


def test_close_progress_has_a_tile_for_pending_districts(
    app: Open, db_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RECON_TODAY", "2025-07-03")
    storage = open_storage(StorageSettings(db_url=db_url, mode="naive"))
    storage.create_run(MONTH, DISTRICTS, mode="optimized", source="sim")  # not checked yet
    storage.create_run("2030-01", DISTRICTS, mode="optimized", source="sim")  # an old bug's
    storage.close()
    at = app("close")
    assert_clean(at)
    tiles = state_tiles(at)
    assert tiles["pending"] == sum(tiles.values()) == len(DISTRICTS)
    assert metrics(at)["Days since month end"] == "3", "shown while the month is open"
    offered = next(s for s in at.sidebar.selectbox if s.label == "Month").options
    assert offered[0] == MONTH and "2030-01" not in offered, "only months that have ended"


def test_close_progress_charts_are_readable(app: Open, populated: str):
    at = app("close")
    assert_clean(at)
    found = charts(at)
    heatmap = next(c for c in found if c["data"][0]["type"] == "heatmap")
    assert heatmap["data"][0]["showscale"] is False, "categories, not a colour bar"
    legend = [t["name"] for t in heatmap["data"][1:]]
    assert legend == list(queries.CHANGE_KINDS)
    assert heatmap["layout"]["xaxis"]["type"] == "category", "date ticks, one per as-of day"
    assert all(len(x) == 10 for x in heatmap["data"][0]["x"])  # YYYY-MM-DD
    assert heatmap["layout"]["yaxis"]["ticktext"][0].endswith("· completed")
    timeline = next(c for c in found if "figures by as-of date" in c["layout"]["title"]["text"])
    axes = [v for k, v in timeline["layout"].items() if k.startswith("yaxis")]
    assert axes and all(a["tickformat"] == ",d" for a in axes), "1,037, not 1.0365k"
    assert timeline["layout"]["xaxis"]["tickformat"] == "%b %d"
    progress = at.dataframe[0].value
    assert set(progress["window"]) == {"final"} and (progress["stable_days"] == 3).all()
