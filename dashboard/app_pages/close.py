"""Close progress: which districts are final, which still move, when the close is done."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from typing import Any

import plotly.graph_objects as go
import runtime
import streamlit as st
import ui
from plotly.subplots import make_subplots

from engine.app import queries
from engine.app.months import MonthStatus, month_status
from engine.domain.models import ALL_METRICS

console = runtime.get_console()
month = runtime.month()
CHANGE_COLORS = ("#d0d7de", "#8fd19e", "#f2cc60", "#cf222e")  # in queries.CHANGE_KINDS order
HEATMAP_ROWS = 40  # districts per heatmap page: 40 rows of 16 px fit a laptop screen
ROW_PX = 16
DAY_MS = 86_400_000

st.title(f"Close progress · {month}")


def start_run(districts: list[str] | None = None) -> None:
    with ui.guard():
        runtime.put("batch_id", console.start_batch(month, districts=districts).batch_id)


def empty_state() -> None:
    st.info(
        f"No month-end run for {month} yet. Start one to reconcile every district the "
        "source publishes; progress shows here as it goes.",
        icon=":material/info:",
    )
    st.button("Start month-end run", type="primary", on_click=start_run)


def kpis(view: queries.CloseView) -> None:
    """One tile per state (they add up to the districts), then where the close stands."""
    tiles = st.columns(len(queries.DISTRICT_STATES))
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(view.by_reason.items()))
    helps = {
        "pending": "Not checked yet",
        "finalizing": "In the window's last days",
        "completed": f"Final figures ({reasons or 'none'})",
        "cancelled": "Stopped before final: not final",
    }
    for tile, state in zip(tiles, queries.DISTRICT_STATES, strict=True):
        tile.metric(state.capitalize(), view.counts[state], help=helps.get(state))


def summary(view: queries.CloseView) -> None:
    """Finalized share, days since month end while open, and close (or why it is not)."""
    tiles = st.columns(3)
    tiles[0].metric(
        "Finalized",
        f"{view.percent_finalized:.0f} %",
        help=f"{view.counts['completed']} of {view.total} districts have final figures",
    )
    if view.finished:
        final = view.final_as_of.isoformat() if view.final_as_of else "–"
        tiles[1].metric("Closed: final as of", final, help="Newest as-of date of final figures")
    elif view.status is MonthStatus.INCOMPLETE:
        tiles[1].metric("Not closed", f"{view.unfinished} not final")
    else:
        projected = view.projected_close.isoformat() if view.projected_close else "–"
        tiles[1].metric("Projected close", projected)
    if view.days_since_month_end is not None:  # only while the month is open
        tiles[2].metric("Days since month end", view.days_since_month_end)


def incomplete(view: queries.CloseView) -> None:
    """A month whose run stopped with failed or cancelled districts: say so and offer a rerun."""
    failed, cancelled = view.counts["failed"], view.counts["cancelled"]
    stopped = " and ".join(
        f"{n} {word}" for n, word in ((cancelled, "were cancelled"), (failed, "failed")) if n
    )
    st.warning(
        f"**{month} is not closed**: of {view.total} districts, {stopped}, so their figures "
        "are not final. Run the month again to finish it: a new run checks all its districts again "
        f"(up to today, {console.today()})"
        + (" and retries the failed ones; their errors are in the table." if failed else "."),
        icon=":material/warning:",
    )
    label = "Retry failed and run the month again" if failed else "Continue: run the month again"
    districts = [r["district"] for r in view.districts]  # the month's own, not every one
    st.button(label, type="primary", on_click=start_run, args=(districts,), key="run_again")


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
    states = [s for s in queries.DISTRICT_STATES if view.counts[s]]
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
    runtime.put("table_districts", [r["district"] for r in view.districts])
    columns = table_columns(console.settings.recon.stability_period_days)
    ui.table(
        view.districts,
        key="district_table",
        on_select=select_district,
        selection_mode="single-row",
        column_order=tuple(columns),
        column_config=columns,
    )
    st.caption("Select a row to see that district's timeline right below.")


def table_columns(required: int) -> dict[str, Any]:
    """The progress table's columns in display order, sized to fit a laptop screen
    beside the sidebar (the outcome, a rule or an error, gets the room left)."""
    return {
        "district": st.column_config.TextColumn("District", width=62),
        "state": st.column_config.TextColumn("State", width=88),
        "stable_days": st.column_config.ProgressColumn(
            "Stable days", min_value=0, max_value=required, format=f"%d of {required}", width=95
        ),
        "window": st.column_config.TextColumn(
            "Window left", width=80, help="Days left in the closing window"
        ),
        "checks": st.column_config.NumberColumn("Checks", width=58, format="%d"),
        "significant_changes": st.column_config.NumberColumn(
            "Significant", width=80, format="%d", help="Significant changes seen"
        ),
        "final_as_of": st.column_config.DateColumn("Final as of", width=90),
        "eta": st.column_config.DateColumn("ETA", width=90),
        "outcome": st.column_config.TextColumn(
            "Outcome", width=265, help="The rule that made the district final, or why it failed"
        ),
    }


def select_district() -> None:
    rows = st.session_state["district_table"]["selection"]["rows"]
    if rows:
        runtime.put("district", runtime.get("table_districts")[rows[0]])


def heatmap(matrix: queries.ChangeMatrix, view: queries.CloseView) -> None:
    if not matrix.days:
        st.info("No checks recorded yet: the heatmap fills in as districts are checked.")
        return
    if matrix.unchecked:
        states = {r["district"]: r["state"] for r in view.districts}
        counts: dict[str, int] = {}
        for district in matrix.unchecked:
            counts[states[district]] = counts.get(states[district], 0) + 1
        found = ", ".join(f"{n} {state}" for state, n in counts.items())
        st.caption(f"Not shown: {len(matrix.unchecked)} districts never checked ({found}).")
    pages = math.ceil(len(matrix.districts) / HEATMAP_ROWS)
    number = 0
    if pages > 1:
        number = st.radio(
            "Heatmap districts (failed and cancelled first, completed last)",
            range(pages),
            format_func=lambda n: page_label(matrix, n),
            horizontal=True,
            key="heatmap_page",
        )
    shown = matrix.page(number, HEATMAP_ROWS)
    fig = go.Figure([heatmap_trace(shown), *legend_traces()])
    fig.update_yaxes(
        type="category",
        autorange="reversed",
        title="District",
        tickmode="array",
        tickvals=shown.districts,
        ticktext=[f"{d} · {state}" for d, state in zip(shown.districts, shown.states, strict=True)],
    )
    fig.update_xaxes(type="category", title="As-of date")
    fig.update_layout(
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"}
    )
    height = max(260, ROW_PX * len(shown.districts) + 150)
    st.plotly_chart(ui.layout(fig, "Changes by district and day", height), key="heatmap")
    st.caption("Blank cells: not checked on that day (before its first check or after it stopped).")


def page_label(matrix: queries.ChangeMatrix, number: int) -> str:
    """``1–40: pending, monitoring``: the rows of a heatmap page and their states."""
    part = matrix.page(number, HEATMAP_ROWS)
    first = number * HEATMAP_ROWS + 1
    states = ", ".join(dict.fromkeys(part.states))
    return f"{first}–{first + len(part.districts) - 1}: {states}"


def heatmap_trace(matrix: queries.ChangeMatrix) -> go.Heatmap:
    """One cell per district and day, one flat colour per change kind (no colour bar:
    the legend traces name the kinds)."""
    code = {kind: n for n, kind in enumerate(queries.CHANGE_KINDS)}
    steps = len(CHANGE_COLORS)
    scale = [
        [edge, color]
        for n, color in enumerate(CHANGE_COLORS)
        for edge in (n / steps, (n + 1) / steps)
    ]
    return go.Heatmap(
        z=[[code[k] if k else None for k in row] for row in matrix.kinds],
        x=[day.isoformat() for day in matrix.days],
        y=matrix.districts,
        customdata=[
            [f"{state} · {k or 'not checked'}" for k in row]
            for state, row in zip(matrix.states, matrix.kinds, strict=True)
        ],
        text=matrix.details,
        colorscale=scale,
        zmin=-0.5,
        zmax=steps - 0.5,
        showscale=False,
        xgap=1,
        ygap=1,
        hovertemplate="District %{y} · %{x}<br>%{customdata}<br>%{text}<extra></extra>",
    )


def legend_traces() -> list[go.Scatter]:
    """A legend entry per change kind, drawn nowhere."""
    return [
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker={"symbol": "square", "size": 12, "color": color},
            name=kind,
            hoverinfo="skip",
        )
        for kind, color in zip(queries.CHANGE_KINDS, CHANGE_COLORS, strict=True)
    ]


def timeline(view: queries.CloseView) -> None:
    districts = [r["district"] for r in view.districts]
    chosen = runtime.get("district")
    left, right = st.columns([1, 3])
    district = left.selectbox(
        "District", districts, index=districts.index(chosen) if chosen in districts else 0
    )
    row = next(r for r in view.districts if r["district"] == district)
    job_id = row["job_id"]
    if row["error"]:
        st.warning(f"District {district} failed: {row['error']}", icon=":material/error:")
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
    date_axes(fig, [p["as_of"] for m in metrics for p in detail.series[m]])
    for row, metric in enumerate(metrics, 1):
        fig.update_yaxes(count_axis([p["value"] for p in detail.series[metric]]), row=row, col=1)
    return ui.layout(fig, title, 170 * len(metrics) + 100)


def date_axes(fig: go.Figure, days: list[date]) -> None:
    """Whole days on the x axes, half a day of room either side: a single as-of date
    would otherwise get sub-millisecond ticks."""
    if not days:
        return
    first, last = min(days), max(days)
    span = (last - first).days + 1
    half = timedelta(hours=12)
    fig.update_xaxes(
        type="date",
        range=[datetime.combine(first, time()) - half, datetime.combine(last, time()) + half],
        dtick=DAY_MS * max(1, math.ceil(span / 10)),
        tickformat="%b %d",
        hoverformat="%Y-%m-%d",
    )


def count_axis(values: list[float]) -> dict[str, object]:
    """A y axis of whole counts: ``1,037``, never ``1.0365k``, and no ``37.5`` tick
    (a narrow range steps by whole numbers)."""
    axis: dict[str, object] = {"tickformat": ",d", "hoverformat": ",d"}
    if values and max(values) - min(values) <= 10:
        axis["dtick"] = 1 if max(values) - min(values) <= 5 else 2
    return axis


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
    shown = f"latest {len(rows)}" if len(rows) == queries.CLOSE_EVENTS_SHOWN else len(rows)
    with st.expander(f"Events ({shown})", icon=":material/notifications:"):
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
    elif view.status is MonthStatus.INCOMPLETE:
        incomplete(view)
    elif view.worked_elsewhere:
        st.info(
            f"Worked by another process ({view.worked_elsewhere}): its figures show here as "
            "it commits them. Its batch can be cancelled on the Batch runs page.",
            icon=":material/sync:",
        )
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
    left, right = st.columns([1, 2])
    with left:
        donut(view)
    with right:
        summary(view)
        download(view)
    st.subheader("Districts")
    progress_table(view)
    with st.container(border=True):
        timeline(view)
    heatmap(queries.change_matrix(console, month), view)
    events_section()
    return view.live


with ui.guard():
    ui.live_fragment(overview, active=month_status(console, month).live)
