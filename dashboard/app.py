"""Month-end reconciliation dashboard: ``streamlit run dashboard/app.py`` (or ``make run``).

The router: page setup, the engine from one cached getter, the shared sidebar
and the pages in ``app_pages/``.
"""

from __future__ import annotations

import runtime
import streamlit as st
import ui

from engine.instrument import reads_for

st.set_page_config(
    page_title="Month-end reconciliation",
    page_icon=":material/event_available:",
    layout="wide",
)

PAGES = [
    st.Page(
        "app_pages/close.py",
        title="Close progress",
        icon=":material/donut_large:",
        default=True,
    ),
    st.Page("app_pages/batch.py", title="Batch runs", icon=":material/queue:", url_path="batch"),
    st.Page("app_pages/cache.py", title="Cache", icon=":material/memory:", url_path="cache"),
    st.Page(
        "app_pages/performance.py",
        title="Performance",
        icon=":material/speed:",
        url_path="performance",
    ),
    st.Page(
        "app_pages/before_after.py",
        title="Before / after",
        icon=":material/compare_arrows:",
        url_path="before-after",
    ),
    st.Page("app_pages/settings.py", title="Settings", icon=":material/tune:", url_path="settings"),
]

page = st.navigation(PAGES)
console = runtime.console_or_stop()
with ui.guard(), reads_for("dashboard"):  # the pages' reads are not the engine's work
    runtime.sidebar(console)
    page.run()
