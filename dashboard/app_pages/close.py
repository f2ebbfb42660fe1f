"""Close progress: which districts are final, which still move, when the close is done."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import plotly.graph_objects as go
import runtime
import streamlit as st
import ui
from plotly.subplots import make_subplots

from engine.app import queries
from engine.app.months import month_status
from engine.domain.models import ALL_METRICS

console = runtime.get_console()
month = runtime.month()
CHANGE_COLORS = ("#d0d7de", "#dafbe1", "#f2cc60", "#cf222e")  # in queries.CHANGE_KINDS order

st.title(f"Close progress · {month}")


def start_run() -> None:
    with ui.guard():
        runtime.put("batch_id", console.start_batch(month).batch_id)


def empty_state() -> None:
    st.info(
        f"No month-end run for {month} yet. Start one to reconcile every district the "
        "source publishes; progress shows here as it goes.",
        icon=":material/info:",
    )
    st.button("Start month-end run", type="primary", on_click=start_run)


def kpis(view: queries.CloseView) -> None:
    counts = view.counts
    top = st.columns(4)
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(view.by_reason.items()))
    top[0].metric("Completed", counts.get("completed", 0), help=f"Finalized ({reasons or 'none'})")
    top[1].metric("Monitoring", counts.get("monitoring", 0))
    top[2].metric("Stabilizing", counts.get("stabilizing", 0))
    top[3].metric("Finalizing", counts.get("finalizing", 0), help="In the window's last days")
    bottom = st.columns(4)
    failed = counts.get("failed", 0)
    bottom[0].metric("Failed", failed, help=f"{counts.get('cancelled', 0)} cancelled")
    bottom[1].metric("Finalized", f"{view.percent_finalized:.0f} %")
    bottom[2].metric("Days since month end", view.days_since_month_end)
    if view.finished:
        final = view.final_as_of.isoformat() if view.final_as_of else "–"
        bottom[3].metric("Closed: final as of", final, help="Newest as-of date of final figures")
    else:
        projected = view.projected_close.isoformat() if view.projected_close else "–"
        bottom[3].metric("Projected close", projected)


def download(view: queries.CloseView) -> None:
    """The month's final figures as CSV, made when clicked (the same as `recon export`)."""
    note = "final" if view.finished else "final so far: districts not final have no figures"
    st.download_button(
        "Download final figures (CSV)",
        data=lambda: queries.final_csv(console, month),
        file_name=f"final-figures-{month}.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        help=f"One row per district: status, reason, final as-of and every metric ({note}).",
        key="download_final",
    )


def export_warnings() -> None:
    """What the month's exports warned of (e.g. an unknown distinguished code: kept,
    counted under its own level), a line per district naming the file and the code."""
    found = queries.month_warnings(console, month)
    if not found:
        return
    plural = "s" if len(found) > 1 else ""
    # In code spans: file names keep their underscores (no emphasis) and stay whole.
    lines = "\n".join("- `" + w.summary.replace("`", "'") + "`" for w in found)
    st.warning(
        f"The exports of {len(found)} district{plural} had warnings (the figures were kept):"
        f"\n\n{lines}",
        icon=":material/warning:",
    )


def donut(view: queries.CloseView) -> None:
    states = [s for s in ui.STATE_COLORS if view.counts.get(s)]
    fig = go.Figure(
        go.Pie(
            labels=states,
            values=[view.counts[s] for s in states],
            hole=0.55,
            marker_colors=[ui.STATE_COLORS[s] for s in states],
            sort=False,
            textinfo="value",
        )
    )
    fig.add_annotation(text=f"{view.total}<br>districts", showarrow=False, font_size=16)
    fig = ui.layout(fig, "Districts by state", 330)
    fig.update_layout(legend={"orientation": "h", "y": -0.05})
    st.plotly_chart(fig, key="donut")


def progress_table(view: queries.CloseView) -> None:
    required = console.settings.recon.stability_period_days
    runtime.put("table_districts", [r["district"] for r in view.districts])
    longest = max(r["window_days"] for r in view.districts)
    ui.table(
        view.districts,
        key="district_table",
        on_select=select_district,
        selection_mode="single-row",
        column_order=(
            "district",
            "state",
            "stable_days",
            "window_left",
            "reason",
            "final_as_of",
            "eta",
            "checks",
            "significant_changes",
            "error",
        ),
        column_config={
            "district": "District",
            "state": "State",
            "stable_days": st.column_config.ProgressColumn(
                "Stable days", min_value=0, max_value=required, format=f"%d of {required}"
            ),
            "window_left": st.column_config.ProgressColumn(
                "Window left", min_value=0, max_value=longest, format="%d days"
            ),
            "reason": "Reason",
            "final_as_of": st.column_config.DateColumn("Final as of"),
            "eta": st.column_config.DateColumn("ETA"),
            "checks": "Checks",
            "significant_changes": "Significant",
            "error": "Error",
        },
    )
    st.caption("Select a row to see that district's timeline below.")


def select_district() -> None:
    rows = st.session_state["district_table"]["selection"]["rows"]
    if rows:
        runtime.put("district", runtime.get("table_districts")[rows[0]])


def heatmap(matrix: queries.ChangeMatrix) -> None:
    if not matrix.days:
        st.info("No checks recorded yet: the heatmap fills in as districts are checked.")
        return
    code = {kind: n for n, kind in enumerate(queries.CHANGE_KINDS)}
    z = [[code[k] if k else None for k in row] for row in matrix.kinds]
    steps = len(CHANGE_COLORS)
    scale = [
        [edge, color]
        for n, color in enumerate(CHANGE_COLORS)
        for edge in (n / steps, (n + 1) / steps)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=matrix.days,
            y=matrix.districts,
            customdata=[[k or "not checked" for k in row] for row in matrix.kinds],
            text=matrix.details,
            colorscale=scale,
            zmin=-0.5,
            zmax=steps - 0.5,
            xgap=1,
            ygap=1,
            hovertemplate="District %{y} · %{x}<br>%{customdata}<br>%{text}<extra></extra>",
            colorbar={
                "tickvals": list(range(steps)),
                "ticktext": list(queries.CHANGE_KINDS),
                "title": "",
            },
        )
    )
    fig.update_yaxes(type="category", autorange="reversed", title="District")
    fig.update_xaxes(title="As-of date")
    height = max(260, 14 * len(matrix.districts) + 110)
    st.plotly_chart(ui.layout(fig, "Changes by district and day", height), key="heatmap")


def timeline(view: queries.CloseView) -> None:
    districts = [r["district"] for r in view.districts]
    chosen = runtime.get("district")
    st.subheader("District timeline")
    left, right = st.columns([1, 3])
    district = left.selectbox(
        "District", districts, index=districts.index(chosen) if chosen in districts else 0
    )
    job_id = next(r["job_id"] for r in view.districts if r["district"] == district)
    detail = queries.timeline_view(console, job_id)
    metrics = right.multiselect("Metrics", ALL_METRICS, default=detail.telling_metrics[:4])
    if not detail.entries:
        st.info(f"District {district} has not been checked yet.")
        return
    if not metrics:
        st.warning("Choose at least one metric to chart.")
        return
    st.plotly_chart(timeline_chart(detail, metrics), key="timeline_chart")
    st.caption(
        "Shaded days had a significant change of some metric; diamonds mark the "
        "charted metric's own significant changes."
    )
    ui.table(
        detail.entries,
        column_config={
            "as_of": st.column_config.DateColumn("As of"),
            "checked_at": st.column_config.DatetimeColumn("Checked", format="YYYY-MM-DD HH:mm:ss"),
            "data_month": "Data month",
            "significant": st.column_config.CheckboxColumn("Significant"),
            "changes": st.column_config.TextColumn("Changes", width="large"),
            "note": "Note",
        },
    )


def timeline_chart(detail: queries.TimelineView, metrics: list[str]) -> go.Figure:
    fig = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, subplot_titles=metrics)
    for row, metric in enumerate(metrics, 1):
        for trace in metric_traces(detail.series[metric], metric, first=row == 1):
            fig.add_trace(trace, row=row, col=1)
    fig.update_layout(shapes=day_marks(detail))
    title = f"District {detail.job.district}: figures by as-of date"
    if detail.job.final_as_of:
        title += f" (final as of {detail.job.final_as_of}, dotted)"
    fig.update_layout(
        legend={
            "orientation": "h",
            "y": 1.02 + 0.12 / len(metrics),
            "x": 1,
            "xanchor": "right",
            "yanchor": "bottom",
        }
    )
    fig.update_yaxes(tickformat="~s")
    return ui.layout(fig, title, 170 * len(metrics) + 100)


def metric_traces(
    points: list[dict[str, Any]], metric: str, *, first: bool
) -> tuple[go.Scatter, go.Scatter]:
    """A metric's line, and diamonds on its own significant changes (in the legend once)."""
    marked = [p for p in points if p["significant"]]
    line = go.Scatter(
        x=[p["as_of"] for p in points],
        y=[p["value"] for p in points],
        mode="lines+markers",
        line_color=ui.STATE_COLORS["monitoring"],
        name=metric,
        showlegend=False,
    )
    diamonds = go.Scatter(
        x=[p["as_of"] for p in marked],
        y=[p["value"] for p in marked],
        mode="markers",
        marker={"color": "#cf222e", "size": 11, "symbol": "diamond"},
        name="significant change of this metric",
        legendgroup="significant",
        showlegend=first,
    )
    return line, diamonds


def day_marks(detail: queries.TimelineView) -> list[dict[str, object]]:
    """Shaded days with a significant change of any metric, and the final as-of date
    dotted, across every subplot (one shape each: plotly's add_vrect costs ~70 ms)."""
    marks: list[dict[str, object]] = []
    for day in detail.significant_days:
        noon = datetime.combine(day, time(12))
        marks.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": noon - timedelta(days=1),
                "x1": noon,
                "y0": 0,
                "y1": 1,
                "fillcolor": "#cf222e",
                "opacity": 0.1,
                "line": {"width": 0},
                "layer": "below",
            }
        )
    final = detail.job.final_as_of
    if final is not None:
        marks.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": final,
                "x1": final,
                "y0": 0,
                "y1": 1,
                "line": {"color": "#2da44e", "dash": "dot", "width": 2},
            }
        )
    return marks


EVENT_COLUMNS = ("created_at", "kind", "district", "details", "delivery")


def events_section() -> None:
    """Alert events of the month (final, job failed, late revision) and their delivery."""
    rows = queries.close_events(console, month)
    with st.expander(f"Events ({len(rows)})", icon=":material/notifications:"):
        if not rows:
            st.caption(
                "No events for this month yet: the month final, failed jobs and late "
                "revisions are recorded here (and posted to `[notify] webhook_url`)."
            )
            return
        ui.table(rows, key="close_events", column_order=EVENT_COLUMNS)


def watcher_line() -> None:
    """Whether a watcher follows the close: source, last and next tick, where it runs."""
    watcher = queries.watcher_view(console)
    error = f" · last error: {watcher.last_error}" if watcher.last_error else ""
    st.caption(f"{watcher.summary}{error}", help="`recon watch`: one watcher per database")


def overview() -> bool:
    watcher_line()
    view = queries.close_view(console, month)
    if view.total == 0:
        empty_state()
        return False
    if view.running_batch is not None:
        ui.batch_panel(queries.batch_view(console, view.running_batch))
    elif view.live:
        st.warning(
            "Some districts are not final and no batch of this dashboard is working on them: "
            f"their closing period was still open on the last day checked (today is "
            f"{console.today()}), the run was stopped, or another process (e.g. `recon run`) "
            "works it. Continue it here (checks up to today), or resume its batch on the "
            "Batch runs page.",
            icon=":material/warning:",
        )
        st.button("Continue month-end run", on_click=start_run)
    kpis(view)
    export_warnings()
    download(view)
    left, right = st.columns([1, 3])
    with left:
        donut(view)
    with right:
        progress_table(view)
    heatmap(queries.change_matrix(console, month))
    timeline(view)
    events_section()
    return view.live


with ui.guard():
    ui.live_fragment(overview, active=month_status(console, month).live)
