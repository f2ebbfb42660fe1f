"""Widgets, charts and messages shared by the pages."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import runtime
import streamlit as st

from engine.app.queries import BatchView
from engine.errors import (
    BatchError,
    ConfigError,
    ConflictError,
    EngineError,
    ParseError,
    SourceError,
    StorageError,
)
from engine.instrument import reads_for

STATE_COLORS = {
    "completed": "#2da44e",
    "monitoring": "#1f6feb",
    "stabilizing": "#8250df",
    "finalizing": "#bf8700",
    "failed": "#cf222e",
    "cancelled": "#6e7781",
    "pending": "#afb8c1",
    "active": "#54aeff",
}
CHART_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}

_HINTS: tuple[tuple[type[EngineError], str], ...] = (
    (ConflictError, "Wait for that work to end, or cancel it on the Batch runs page, then retry."),
    (ConfigError, "Correct the value and try again."),
    (StorageError, "Check that the database is reachable and writable, then retry."),
    (SourceError, "Check the data source (sidebar shows which) or retry in a moment."),
    (ParseError, "The source sent an export we cannot read: check the source's files."),
    (BatchError, "See the batch's items below; start or resume the batch again if needed."),
)


def explain(exc: EngineError) -> str:
    """The error's message and what the user can do about it."""
    hint = next(
        (h for kind, h in _HINTS if isinstance(exc, kind)),
        "Retry; if it persists, restart the dashboard.",
    )
    return f"{exc}. {hint}"


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show an engine error as a message instead of a traceback; the page goes on."""
    try:
        yield
    except EngineError as exc:
        st.error(explain(exc), icon=":material/error:")


def live_fragment(fn: Callable[[], bool], *, active: bool) -> None:
    """Run ``fn`` as a fragment that re-runs every few seconds while ``active`` and the
    sidebar's live refresh is on. ``fn`` returns whether something is live; when that
    changes, the whole page re-runs once so that it polls, or stops polling."""

    def body() -> None:
        with guard(), reads_for("dashboard"):  # a fragment re-runs without app.py around it
            if fn() != active:  # started or ended: re-run the page to poll, or to stop
                st.rerun(scope="app")

    run_every = runtime.REFRESH_S if active and runtime.live() else None
    st.fragment(run_every=run_every)(body)()


def table(rows: Sequence[Mapping[str, Any]], **kwargs: Any) -> Any:
    """A dataframe of view rows without the index (``kwargs`` go to ``st.dataframe``).

    Missing values (no error, no ETA once final) show as a dash, not as "None".
    """
    return st.dataframe(pd.DataFrame(list(rows)), hide_index=True, placeholder="–", **kwargs)


def batch_panel(view: BatchView) -> None:
    """Progress bar, counters, ETA and throughput of one batch. Cancelled items are not
    done: a batch cancelled early shows the share it did, and how many were cancelled."""
    info, progress = view.info, view.progress
    cancelled = f" · {view.cancelled} cancelled" if view.cancelled else ""
    st.progress(
        min(1.0, view.percent / 100),
        text=f"Batch {info['batch']} · {info['name']}: **{view.percent:.0f} %** done "
        f"({view.done} of {info['total']} items){cancelled} · {info['status']}",
    )
    cols = st.columns(7)
    cols[0].metric("Succeeded", info["succeeded"] if not progress else progress.succeeded)
    cols[1].metric("Failed", info["failed"] if not progress else progress.failed)
    cols[2].metric("Cancelled", view.cancelled)
    cols[3].metric("Running", progress.running + progress.retrying if progress else "–")
    cols[4].metric("Queued", progress.queued if progress else info["unfinished"])
    cols[5].metric(
        "Throughput",
        "–" if view.rate is None else f"{view.rate:.2f}/s",
        help="Items done per second while items ran (idle and cancelled time left out)",
    )
    cols[6].metric("ETA", eta_text(progress.eta_s) if progress and view.live else "–")
    if len(view.throughput) >= 5:  # a batch of a few seconds has no curve worth a chart
        fig = go.Figure(
            go.Bar(
                x=[r["at"] for r in view.throughput],
                y=[r["items_per_s"] for r in view.throughput],
                width=[r["width_s"] * 950 for r in view.throughput],  # ms on a date axis, a gap
                marker_color=STATE_COLORS["monitoring"],
            )
        )
        fig.update_yaxes(title="items / s")
        st.plotly_chart(layout(fig, "Items done per second", 220), key="throughput")


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "estimating"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def percent(value: float | None) -> str:
    """A share as text; "–" for none (a hit rate of 0 of 0 reads), never "0.0 %"."""
    return "–" if value is None else f"{100 * value:.1f} %"


def layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=CHART_MARGIN, legend_title_text="")
    return fig
