"""Batch runs: start a month-end batch, watch it live, cancel it, resume interrupted ones."""

from __future__ import annotations

import dataclasses
from typing import Any

import runtime
import streamlit as st
import ui

from engine.app import queries
from engine.errors import EngineError

console = runtime.get_console()
st.title("Batch runs")


def defaults() -> dict[str, object]:
    """The process's batch settings now (the Settings page changes them for every tab)."""
    return dataclasses.asdict(console.settings.batch)


def known_districts() -> list[str]:
    """The districts the source publishes, or none if it cannot say right now."""
    try:
        return console.districts(runtime.month())
    except EngineError as exc:
        st.warning(f"The district list is not available: {ui.explain(exc)}")
        return []


def start_form() -> None:
    d = defaults()
    with st.form("start_batch"):
        st.subheader("Start a batch")
        month = st.text_input("Month (YYYY-MM)", value=runtime.month())
        districts = st.multiselect(
            "Districts",
            known_districts(),
            placeholder="All districts the source publishes",
            help="Leave empty for every district; ids such as 42 or F can also be typed",
            accept_new_options=True,
        )
        a, b, c = st.columns(3)
        priority = a.number_input("Priority", value=0, step=1, help="Higher runs first")
        concurrency = b.number_input("Concurrency", value=d["max_concurrent_jobs"], step=1)
        retries = c.number_input("Retries", value=d["retry_attempts"], step=1)
        a, b, c = st.columns(3)
        timeout = a.number_input("Timeout (ms)", value=d["timeout_ms"], step=1000)
        memory = b.number_input("Memory threshold (MB)", value=d["memory_threshold_mb"], step=64)
        throttling = c.checkbox("Resource throttling", value=bool(d["enable_resource_throttling"]))
        st.caption("Out-of-range values are clamped to safe ranges; the result is shown.")
        if st.form_submit_button("Start", type="primary"):
            config = {
                "maxConcurrentJobs": int(concurrency),
                "retryAttempts": int(retries),
                "timeoutMs": int(timeout),
                "memoryThresholdMB": int(memory),
                "enableResourceThrottling": throttling,
            }
            start(month.strip(), districts, int(priority), config)


def start(month: str, districts: list[str], priority: int, config: dict[str, object]) -> None:
    with ui.guard():
        result = console.start_batch(
            month, districts=districts or None, priority=priority, config=config
        )
        runtime.put("batch_id", result.batch_id)
        runtime.put("batch_submitted", (result.batch_id, result.notes, result.config))
        if month != runtime.month():
            runtime.follow_month(month)
        st.rerun()


def submitted() -> None:
    """The newest batch in the store (whichever tab or process started it), with the
    clamping notes when this tab started it."""
    last = queries.last_start(console)
    if last is None:
        st.info("No batch yet: start one with the form.", icon=":material/info:")
        return
    mine = runtime.get("batch_submitted")
    st.markdown(
        f"Batch **{last['batch']}** ({last['name']}) started "
        f"{last['created_at']:%Y-%m-%d %H:%M:%S}, **{last['status']}**."
    )
    if mine is not None and mine[0] == last["batch"]:
        for note in mine[1]:
            st.warning(f"Clamped: {note}", icon=":material/warning:")
    c = last["config"]
    if c:
        st.markdown(
            f"Runs with concurrency **{c.get('max_concurrent_jobs')}**, retries "
            f"**{c.get('retry_attempts')}**, timeout **{c.get('timeout_ms')} ms**, throttling "
            f"**{'on' if c.get('enable_resource_throttling') else 'off'}** above "
            f"**{c.get('memory_threshold_mb')} MB**."
        )


def batch_live(batch_id: int) -> bool:
    view = queries.batch_view(console, batch_id)
    ui.batch_panel(view)
    if view.running and st.button("Cancel batch", icon=":material/cancel:"):
        console.batch.cancel(batch_id)  # another process's stops within a second
        st.toast(f"Batch {batch_id} cancelled: queued items dropped, running ones stopping.")
        runtime.put("cancelled", batch_id)
        st.rerun(scope="app")
    if runtime.get("cancelled") == batch_id:
        st.success(f"Batch {batch_id} cancelled.", icon=":material/cancel:")
    with st.expander(f"Items ({len(view.items)})", expanded=not view.live):
        items_table(view)
    return view.live


def items_table(view: queries.BatchView) -> None:
    ui.table(
        view.items,
        column_config={
            "item": "Item",
            "district": "District",
            "month": "Month",
            "status": st.column_config.TextColumn("Status", width="small"),
            "attempts": "Attempts",
            "last_outcome": "Last attempt",
            "outcome": st.column_config.TextColumn("Outcome", width="small"),
            "error": st.column_config.TextColumn("Error", width="medium"),
            "finished_at": st.column_config.DatetimeColumn("Finished", format="HH:mm:ss"),
            "priority": "Priority",
        },
    )


def pick() -> None:
    rows = st.session_state["batch_history"]["selection"]["rows"]
    if rows:
        runtime.put("batch_id", runtime.get("history_ids")[rows[0]])
        runtime.put("repick", True)


HISTORY_COLUMNS = {
    "batch": "Batch",
    "name": "Name",
    "status": "Status",
    "created_at": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm"),
    "finished_at": st.column_config.DatetimeColumn("Finished", format="HH:mm:ss"),
    "total": "Items",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "percent": st.column_config.ProgressColumn(
        "Done", min_value=0, max_value=100, format="%.0f %%", help="Cancelled items are not done"
    ),
    "concurrency": "Concurrency",
    "throttled_s": st.column_config.NumberColumn("Throttled (s)", format="%.1f"),
}


def history_section(history: list[dict[str, Any]]) -> None:
    st.subheader("History")
    st.caption("Select a row to show that batch at the top.")
    runtime.put("history_ids", [r["batch"] for r in history])
    ui.table(
        history,
        key="batch_history",
        on_select=pick,
        selection_mode="single-row",
        column_order=tuple(HISTORY_COLUMNS),
        column_config=HISTORY_COLUMNS,
    )


def resume() -> None:
    with ui.guard():
        resumed = console.batch.resume()
        if resumed:
            runtime.put("batch_id", resumed[-1])
            st.success(f"Resumed batch {', '.join(map(str, resumed))}.")
        else:
            st.info("Nothing to resume: no batch was left unfinished by a stopped process.")


def shown_batch(history: list[dict[str, Any]]) -> int | None:
    """The batch picked in the history, or else the newest."""
    picked = runtime.get("batch_id") or (history[0]["batch"] if history else None)
    return None if picked is None else int(picked)


def shown() -> bool:
    """The shown batch, live while it runs: at the top, in view after Start."""
    history = queries.batch_history(console, limit=1)
    picked = shown_batch(history)
    if picked is None:
        st.info("No batches yet: start one below.")
        return False
    st.subheader(f"Batch {picked}")
    return batch_live(picked)


def history() -> bool:
    """The history, live while a batch runs: its row moves with it."""
    rows = queries.batch_history(console)
    history_section(rows)
    if runtime.get("repick"):  # a row was picked: show that batch at the top
        runtime.put("repick", False)
        st.rerun(scope="app")
    return batch_is_live(rows)


WORKER_COLUMNS = {
    "id": "Worker",
    "host": "Host",
    "pid": "PID",
    "state": "State",
    "started_at": "Started",
    "heartbeat_at": "Last heartbeat",
    "running": "Running (batch/item)",
    "done": "Items done",
}


def workers() -> bool:
    """The ``recon worker`` processes of this database (procrastinate runner)."""
    rows = queries.workers_rows(console)
    st.subheader("Workers")
    runner = console.settings.batch.runner
    if not rows:
        st.caption(
            f"No `recon worker` runs on this database (runner: {runner}). With "
            '`[batch] runner = "procrastinate"` on PostgreSQL, items run in workers.'
        )
        return False
    stall = console.settings.batch.stall_timeout_s
    st.caption(f"A worker silent for {stall:g} s is lost: the others run its items again.")
    ui.table(rows, key="workers", column_order=tuple(WORKER_COLUMNS),
             column_config=WORKER_COLUMNS)  # fmt: skip
    return any(r["state"] == "alive" for r in rows)


def batch_is_live(rows: list[dict[str, Any]]) -> bool:
    picked = shown_batch(rows)
    return picked is not None and queries.batch_view(console, picked).live


with ui.guard():
    first = shown_batch(queries.batch_history(console, limit=1))
    live = first is not None and queries.batch_view(console, first).live
    ui.live_fragment(shown, active=live)
    st.divider()
    left, right = st.columns([3, 2])
    with left:
        start_form()
    with right:
        st.subheader("Last start")
        submitted()
        st.divider()
        st.markdown("A batch left unfinished by a stopped process can continue here.")
        if st.button("Resume interrupted batches", icon=":material/replay:"):
            resume()
    st.divider()
    ui.live_fragment(history, active=live)
    st.divider()
    alive = any(w.state == "alive" for w in queries.workers_view(console))
    ui.live_fragment(workers, active=alive)  # live while a worker heart-beats
