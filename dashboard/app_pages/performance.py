"""Performance: where the engine spends its time, what is slow, and what to do about it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import plotly.express as px
import runtime
import streamlit as st
import ui

from engine.app import queries

console = runtime.get_console()
WINDOWS = {
    "1 minute": 60,
    "5 minutes": 300,
    "15 minutes": 900,
    "1 hour": 3600,
    "6 hours": 6 * 3600,
    "24 hours": 86400,
}
BADGE_COLORS = {"high": "red", "medium": "orange", "low": "blue"}

st.title("Performance")
label = st.selectbox("Window", list(WINDOWS), index=2, help="Figures cover this much time")
window_s = WINDOWS[label]


OPERATION_COLUMNS = {
    "operation": "Operation",
    "calls": "Calls",
    "calls_per_second": st.column_config.NumberColumn("Rate (/s)", format="%.2f"),
    "failures": "Errors",
    "success_rate": st.column_config.NumberColumn("Success", format="percent"),
    "p50_ms": st.column_config.NumberColumn("p50 ms", format="%.2f"),
    "p95_ms": st.column_config.NumberColumn("p95 ms", format="%.2f"),
    "p99_ms": st.column_config.NumberColumn("p99 ms", format="%.2f"),
    "mean_ms": st.column_config.NumberColumn("Mean ms", format="%.2f"),
    "share_of_time": st.column_config.ProgressColumn(
        "Share of time", min_value=0, max_value=1, format="percent"
    ),
    "errors": "Error types",
}


def operations() -> None:
    view = queries.operations_view(console, window_s)
    cols = st.columns(5)
    cols[4].metric(
        "Cache hit rate",
        ui.percent(queries.cache_hit_rate(console)),
        help="The read cache since the start, as on the Cache page (– before the first read)",
    )
    if not view.rows:
        st.info(f"No engine operations in the last {label}: start a batch to see figures.")
    else:
        cols[0].metric("Operations", len(view.rows))
        cols[1].metric("Calls", f"{view.calls:,}")
        cols[2].metric("Failures", f"{view.failures:,}")
        cols[3].metric("Slowest p95", f"{view.slowest_p95_ms:.1f} ms", help=view.slowest)
        ui.table(
            view.rows,
            key="operations",
            column_order=tuple(OPERATION_COLUMNS),
            column_config=OPERATION_COLUMNS,
        )
    if view.own_reads:
        with st.expander(f"The dashboard's and API's own reads ({len(view.own_reads)} operations)"):
            st.caption("Timed apart from the engine's work and left out of the figures above.")
            ui.table(
                view.own_reads,
                key="own_reads",
                column_order=("origin", *OPERATION_COLUMNS),
                column_config={"origin": "Origin", **OPERATION_COLUMNS},
            )


def latency() -> None:
    rows = queries.latency_series(console, window_s)
    if not rows:
        st.info("Latency over time appears once the monitor has written its first interval.")
        return
    fig = px.line(rows, x="at", y="p95_ms", color="operation", log_y=True, markers=True)
    fig.update_traces(connectgaps=False)  # no line across intervals without calls
    fig.update_yaxes(title="p95 latency (ms, log scale)")
    fig.update_xaxes(title="time (interval end)")
    marks = queries.batch_marks(console, window_s)
    times = [r["at"] for r in rows] + [m["at"] for m in marks]
    pad = max(timedelta(seconds=30), (max(times) - min(times)) / 20)
    fig.update_xaxes(range=[min(times) - pad, max(times) + pad])  # no sub-second axis
    shown: list[dict[str, Any]] = []
    for mark in sorted(marks, key=lambda m: m["at"]):
        fig.add_vline(x=mark["at"], line_dash="dot", line_color="#6e7781")
        if shown and mark["at"] - shown[-1]["at"] < pad:  # too close: one label for both
            shown[-1]["text"] = f"{shown[-1]['text']} / {mark['label'].split()[-1]}"
        else:
            shown.append({"at": mark["at"], "text": mark["label"]})
    for label in shown:
        fig.add_annotation(
            x=label["at"], y=1, yref="paper", text=label["text"], showarrow=False,
            textangle=-90, xanchor="right", yanchor="top", font={"size": 10},
        )  # fmt: skip
    title = "p95 latency by interval: the engine's top operations by total time"
    st.plotly_chart(ui.layout(fig, title, 380), key="lat")


def advice_list(title: str, found: list[queries.AdviceItem], none: str) -> None:
    st.subheader(title)
    if not found:
        st.success(none, icon=":material/check_circle:")
    for item in found:
        with st.container(border=True):
            st.badge(item.label, color=BADGE_COLORS[item.level])
            st.markdown(item.message)
            if item.detail:
                st.caption(item.detail)
            if len(item.rows) > 1:
                ui.table(item.rows)


def resources() -> None:
    rows = queries.resource_series(console, window_s)
    if not rows:
        st.info("CPU and memory appear after the first resource samples (every few seconds).")
        return
    left, right = st.columns(2)
    cpu = px.line(rows, x="at", y="cpu_percent", color="process")
    cpu.update_yaxes(title="CPU %", rangemode="tozero")
    cpu.update_xaxes(title="time")
    left.plotly_chart(ui.layout(cpu, "CPU"), key="cpu")
    memory = px.line(rows, x="at", y="rss_mb", color="process")
    memory.update_yaxes(title="resident memory (MB)", rangemode="tozero")
    memory.update_xaxes(title="time")
    right.plotly_chart(ui.layout(memory, "Memory"), key="memory")


ALERT_COLUMNS = ("created_at", "kind", "details", "delivery")


def alerts() -> None:
    """Performance (and watcher) alerts: each condition once per occurrence."""
    st.subheader("Alerts")
    rows = queries.perf_alerts(console)
    if not rows:
        st.success(
            "No alert so far: a low cache hit rate, a slow p95 or memory near "
            "memoryThresholdMB would show here.",
            icon=":material/check_circle:",
        )
        return
    ui.table(rows, key="alerts", column_order=ALERT_COLUMNS)


def page() -> bool:
    operations()
    latency()
    found = queries.advice(console, window_s)
    left, right = st.columns(2)
    with left:
        advice_list("Bottlenecks", found.bottlenecks, "No bottleneck rule fires over this window.")
        for note in found.notes:
            st.caption(f"For information: {note.message}")
    with right:
        advice_list(
            "Recommendations", found.recommendations, "Nothing to recommend over this window."
        )
    st.subheader("Resources")
    resources()
    alerts()
    return True


with ui.guard():
    ui.live_fragment(page, active=True)
