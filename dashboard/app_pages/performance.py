"""Performance: where the engine spends its time, what is slow, and what to do about it."""

from __future__ import annotations

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
    if not view.rows:
        st.info(f"No engine operations in the last {label}: start a batch to see figures.")
        return
    cols = st.columns(4)
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


def latency() -> None:
    rows = queries.latency_series(console, window_s)
    if not rows:
        st.info("Latency over time appears once the monitor has written its first interval.")
        return
    fig = px.line(rows, x="at", y="p95_ms", color="operation", log_y=True, markers=True)
    fig.update_yaxes(title="p95 (ms, log)", dtick=1)
    st.plotly_chart(ui.layout(fig, "p95 latency by interval (top operations)", 360), key="lat")


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


def resources() -> None:
    rows = queries.resource_series(console, window_s)
    if not rows:
        st.info("CPU and memory appear after the first resource samples (every few seconds).")
        return
    left, right = st.columns(2)
    cpu = px.line(rows, x="at", y="cpu_percent", color="process")
    cpu.update_yaxes(title="CPU %", rangemode="tozero")
    left.plotly_chart(ui.layout(cpu, "CPU"), key="cpu")
    memory = px.line(rows, x="at", y="rss_mb", color="process")
    memory.update_yaxes(title="resident MB", rangemode="tozero")
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
