"""Each dashboard page in Streamlit's AppTest, on a real SQLite database in tmp_path."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from streamlit.testing.v1 import AppTest

from engine import settings as settings_mod
from engine.app import queries
from engine.app.console import Console, open_storage
from engine.cancel import NEVER, CancelToken
from engine.domain.models import Snapshot
from engine.settings import StorageSettings
from engine.sources.sim import DISTRICTS as SIM_DISTRICTS
from engine.store.schema import bench_results

from .conftest import DISTRICTS, MONTH

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
    assert engine().cache.stats()["total"]["size"] == 0


def test_cache_page_tunes_a_layer_and_simulates(app: Open, populated: str):
    app("close")
    at = app("cache")
    at.selectbox(key="tune_layer").select("jobs").run()
    next(n for n in at.number_input if n.label == "maxSize").set_value(5_000_000)
    button(at, "Apply").click().run()
    assert_clean(at)
    assert any("clamped" in w.value for w in at.warning)
    assert engine().cache.config()["layers"]["jobs"]["max_size"] == 1_000_000

    next(s for s in at.selectbox if s.label == "Layer" and s.value == "jobs").select("status")
    button(at, "Simulate").click().run()
    assert_clean(at)
    curve = next(c for c in charts(at) if "Hit rate by size" in c["layout"]["title"]["text"])
    assert curve["data"], "one curve per policy and TTL"


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


def test_before_after_lists_stored_results_with_their_charts(app: Open, db_url: str):
    storage = open_storage(StorageSettings(db_url=db_url, mode="naive"))
    result = {
        "naive_s": 12.0,
        "optimized_s": 1.0,
        "speedup": 12.0,
        "checks": 1300,
        "naive_db_roundtrips": 9000,
        "optimized_db_roundtrips": 400,
        "naive_peak_rss_mb": 120.0,
        "optimized_peak_rss_mb": 90.0,
    }
    row = {"created_at": datetime.now(UTC), "suite": "e2e", "quick": True}
    storage.write(bench_results, [{**row, "result": json.dumps(result)}])
    storage.close()

    at = app("before_after")
    assert_clean(at)
    stored = at.dataframe[0].value
    assert list(stored["suite"]) == ["e2e"]
    assert "speedup 12" in stored.iloc[0]["figures"]
    assert metrics(at)["Speed-up"] == "12.0×"
    bars = [c for c in charts(at) if c["data"][0]["type"] == "bar"]
    assert [b["data"][0]["y"] for b in bars] == [[12.0, 1.0], [9000, 400], [120.0, 90.0]]


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
    layers = engine().cache.config()["layers"]
    assert {layer["ttl_ms"] for layer in layers.values()} == {60000}

    at = choose_setting(at, "storage.mode (mode)", "turbo")
    assert "expected 'naive' or 'optimized'" in at.error[0].value
    at = choose_setting(at, "storage.batch_size (batchSize)", "25")
    assert any("RECON_STORAGE_BATCH_SIZE=25" in s.value for s in at.success)


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
    done = engine().tasks.wait(task.task_id)  # the comparison runs on an engine thread
    assert done.error is None and done.state == "succeeded"
    at.run()
    assert_clean(at)
    assert any(s.value == "This run" for s in at.subheader)
    assert metrics(at)["Speed-up"].endswith("×")
    assert len([c for c in charts(at) if c["data"][0]["type"] == "bar"]) == 3
    stored = at.dataframe[0].value
    assert list(stored["suite"]) == ["e2e-dashboard"], "the run is stored with past results"


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
