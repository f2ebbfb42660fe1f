"""Before / after: the same month-end workload in naive and optimized mode, side by side."""

from __future__ import annotations

import plotly.graph_objects as go
import runtime
import streamlit as st
import ui

from engine.app import actions, queries

console = runtime.get_console()
MODE_COLORS = ("#afb8c1", "#2da44e")  # in queries.COMPARISON_MODES order

st.title("Before / after")
st.markdown(
    "Runs one month-end replay twice on the simulator with the same seed: **naive** "
    "(one district at a time, no cache, a commit per write; the original design) and "
    "**optimized** (concurrent districts, caches, batched writes)."
)


def form() -> None:
    limits = actions.COMPARISON_LIMITS
    with st.form("compare"):
        a, b, c, d = st.columns(4)
        districts = a.number_input("Districts", *limits["districts"], 20)
        latency = b.number_input("Latency per fetch (ms)", 0.0, 1000.0, 20.0, step=5.0)
        closing = c.number_input("Closing period (days)", *limits["closing_days"], 10)
        concurrency = d.number_input("Concurrency (optimized)", *limits["concurrency"], 5)
        if st.form_submit_button("Run before/after", type="primary"):
            with ui.guard():
                task_id = actions.start_comparison(
                    console,
                    districts=int(districts),
                    latency_ms=float(latency),
                    closing_days=int(closing),
                    concurrency=int(concurrency),
                )
                runtime.put("task_id", task_id)
                st.rerun()


def task() -> bool:
    task_id = runtime.get("task_id")
    status = console.tasks.status(task_id)
    if not status.finished:
        st.progress(status.fraction, text=f"{status.message} ({status.done} of {status.total})")
        return True
    if status.error:
        st.error(f"The comparison failed: {status.error}. Try fewer districts or retry.")
    else:
        results(queries.comparison_view(status.result), "This run")
    return False


def results(view: queries.ComparisonView, title: str) -> None:
    st.subheader(title)
    cols = st.columns(4)
    cols[0].metric("Speed-up", f"{view.speedup:.1f}×")
    cols[1].metric("Naive", f"{view.naive_s:.2f} s")
    cols[2].metric("Optimized", f"{view.optimized_s:.2f} s")
    cols[3].metric("Checks", f"{view.checks:,.0f}")
    for col, chart in zip(st.columns(len(view.charts)), view.charts, strict=True):
        if chart.values is None:
            col.caption(f"{chart.title}: not in this result")
            continue
        fig = go.Figure(
            go.Bar(
                x=list(queries.COMPARISON_MODES),
                y=list(chart.values),
                marker_color=list(MODE_COLORS),
                text=[f"{v:,.4g}" for v in chart.values],
            )
        )
        col.plotly_chart(ui.layout(fig, chart.title, 300), key=f"{title}_{chart.key}")


def stored() -> None:
    st.subheader("Stored results")
    rows = queries.bench_history(console)
    if not rows:
        st.info("No stored results yet: run a comparison above or `recon bench`.")
        return
    ui.table(
        rows,
        column_order=("id", "created_at", "suite", "quick", "figures"),
        column_config={
            "created_at": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm"),
            "figures": st.column_config.TextColumn("Figures", width="large"),
        },
    )
    latest = queries.latest_comparison(rows)
    if latest is not None and runtime.get("task_id") is None:
        title = f"Latest stored comparison ({latest['suite']}, #{latest['id']})"
        results(queries.comparison_view(latest["result"]), title)


form()
if runtime.get("task_id") not in {t.task_id for t in console.tasks.recent()}:
    runtime.put("task_id", None)  # the engine restarted since
with ui.guard():
    if runtime.get("task_id") is not None:
        running = not console.tasks.status(runtime.get("task_id")).finished
        ui.live_fragment(task, active=running)
    stored()
