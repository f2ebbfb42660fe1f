"""Before / after: the same month-end workload from naive to optimized, step by step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
import runtime
import streamlit as st
import ui

from engine.app import actions, queries

console = runtime.get_console()
BETTER, WORSE = "#2da44e", "#afb8c1"  # lower time, round trips and memory is better

st.title("Before / after")
st.markdown(
    "One month-end replay on the simulator with the same seed, from **naive** (one "
    "district at a time, a district summary per check, a commit per write, no cache: "
    "the original design) to **optimized**, adding one optimization at a time. Each "
    "step runs in its own process, so its peak memory is its own. The headline is the "
    "latest **full-size** run (`recon bench --suite e2e`, 130 districts); quick runs "
    "are labelled and never the headline."
)


def form() -> None:
    limits = actions.COMPARISON_LIMITS
    with st.form("compare"):
        a, b, c, d = st.columns(4)
        districts = a.number_input("Districts", *limits["districts"], 20)
        latency = b.number_input("Latency per fetch (ms)", 0.0, 1000.0, 20.0, step=5.0)
        closing = c.number_input("Closing period (days)", *limits["closing_days"], 10)
        concurrency = d.number_input("Concurrency (optimized)", *limits["concurrency"], 5)
        st.caption("130 districts, 20 ms, 10 days and concurrency 5 is the full size.")
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
    status = console.tasks.status(runtime.get("task_id"))
    if not status.finished:
        st.progress(status.fraction, text=f"{status.message} ({status.done} of {status.total})")
        return True
    if status.error:
        st.error(f"The comparison failed: {status.error}. Try fewer districts or retry.")
    else:
        size = "quick" if status.result.get("quick") else "full size"
        results(status.result, f"This run ({size}; stored below)", key="this")
    return False


def results(result: Mapping[str, Any], title: str, *, key: str, judge: bool = False) -> None:
    """A comparison's headline figures, its steps, its charts and its figures table."""
    view = queries.comparison_view(result)
    st.subheader(title)
    verdict = "met" if view.speedup_met else "missed"
    cols = st.columns(4)
    cols[0].metric(
        "Speed-up",
        f"{view.speedup:.1f}×",
        help=f"target {view.speedup_target}" + (f": {verdict}" if judge else " (full runs)"),
    )
    cols[1].metric("Naive", f"{view.naive_s:.2f} s")
    cols[2].metric("Optimized", f"{view.optimized_s:.2f} s")
    cols[3].metric("Checks", f"{view.checks:,.0f}")
    if judge:
        st.caption(f"Target: speed-up {view.speedup_target} — {verdict}.")
    left, right = st.columns([3, 2])
    with left:
        waterfall(view, key)
    with right:
        figures(result, judge=judge, key=key)
    mode_charts(view, key)


def waterfall(view: queries.ComparisonView, key: str) -> None:
    if not view.steps:
        st.caption("Steps: not in this result (stored before steps were measured).")
        return
    seconds = [s.seconds for s in view.steps]
    deltas = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    fig = go.Figure(
        go.Waterfall(
            x=[s.label for s in view.steps] + ["optimized"],
            y=[seconds[0], *deltas, 0],
            measure=["absolute", *["relative"] * len(deltas), "total"],
            text=[f"{seconds[0]:.2f} s", *(f"{d:+.2f} s" for d in deltas), f"{seconds[-1]:.2f} s"],
            decreasing={"marker": {"color": BETTER}},
            increasing={"marker": {"color": "#cf222e"}},
            totals={"marker": {"color": "#0969da"}},
        )
    )
    fig.update_yaxes(title_text="seconds")
    st.plotly_chart(ui.layout(fig, "Where the speed-up comes from", 360), key=f"{key}_steps")


def figures(result: Mapping[str, Any], *, judge: bool, key: str) -> None:
    suite = "e2e"
    rows = queries.figures_table(suite, result, judge=judge)
    st.markdown("**Figures**")
    ui.table(rows, key=f"{key}_figures", height=320, column_config=FIGURE_COLUMNS)


FIGURE_COLUMNS = {
    "field": st.column_config.TextColumn("Figure"),
    "value": st.column_config.TextColumn("Value"),
    "target": st.column_config.TextColumn("Target"),
    "met": st.column_config.TextColumn("Met?"),
}


def mode_charts(view: queries.ComparisonView, key: str) -> None:
    for col, chart in zip(st.columns(len(view.charts)), view.charts, strict=True):
        if chart.values is None:
            col.caption(f"{chart.title}: not in this result")
            continue
        fig = go.Figure(
            go.Bar(
                x=list(queries.COMPARISON_MODES),
                y=list(chart.values),
                marker_color=[BETTER if b else WORSE for b in chart.better],
                text=[f"{v:,.4g}" for v in chart.values],
            )
        )
        col.plotly_chart(ui.layout(fig, chart.title, 280), key=f"{key}_{chart.key}")


def headline(rows: list[dict[str, Any]]) -> None:
    full = queries.latest_comparison(rows, full=True)
    quick = queries.latest_comparison(rows, full=False)
    if full is None:
        st.info(
            "No full-size run stored yet: `recon bench --suite e2e` measures the full "
            "workload (130 districts, about five minutes) and headlines here."
        )
    else:
        when = f"{full['created_at']:%Y-%m-%d %H:%M}"
        title = f"Headline: latest full-size run (#{full['id']}, {full['suite']}, {when})"
        results(full["result"], title, key="headline", judge=True)
    if quick is not None and (full is None or quick["id"] > full["id"]):
        title = f"Latest quick run (#{quick['id']}, {quick['suite']}): quick sizes, not judged"
        with st.expander(title, expanded=full is None):
            results(quick["result"], f"quick run #{quick['id']}", key="quick")


def trends(rows: list[dict[str, Any]]) -> None:
    st.subheader("Targets over the stored full runs")
    found = queries.target_trends(rows)
    if not found:
        st.caption("No full run stored yet: `recon bench` stores one per suite.")
        return
    cols = st.columns(3)
    for i, trend in enumerate(found):
        fig = go.Figure(
            go.Scatter(
                x=list(trend.when), y=list(trend.values), mode="lines+markers", name=trend.field
            )
        )
        fig.add_hline(y=trend.target_value, line_dash="dash", line_color="#cf222e")
        fig.update_layout(showlegend=False)
        fig.update_xaxes(tickformat="%b %d", nticks=4)  # runs are days apart, not milliseconds
        fig.update_yaxes(rangemode="tozero")
        title = f"{trend.suite}.{trend.field} ({trend.target})"
        cols[i % 3].plotly_chart(
            ui.layout(fig, title, 220), key=f"trend_{trend.suite}_{trend.field}"
        )


def stored(rows: list[dict[str, Any]]) -> None:
    st.subheader("Stored results")
    if not rows:
        st.info("No stored results yet: run a comparison above or `recon bench`.")
        return
    ui.table(
        rows,
        key="stored",
        column_order=("id", "created_at", "suite", "size"),
        column_config={
            "created_at": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm"),
            "size": st.column_config.TextColumn("Size"),
        },
    )
    by_id = {r["id"]: r for r in rows}
    chosen = st.selectbox(
        "Figures of a stored run",
        list(by_id),
        format_func=lambda i: f"#{i} {by_id[i]['suite']} ({by_id[i]['size']})",
        key="bench_figures_of",
    )
    row = by_id[chosen]
    table = queries.figures_table(row["suite"], row["result"], judge=not row["quick"])
    ui.table(table, key="stored_figures", column_config=FIGURE_COLUMNS)


form()
if runtime.get("task_id") not in {t.task_id for t in console.tasks.recent()}:
    runtime.put("task_id", None)  # the engine restarted since
with ui.guard():
    if runtime.get("task_id") is not None:
        running = not console.tasks.status(runtime.get("task_id")).finished
        ui.live_fragment(task, active=running)
    history = queries.bench_history(console)
    headline(history)
    trends(history)
    stored(history)
