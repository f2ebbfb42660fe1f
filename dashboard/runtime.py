"""The dashboard's engine and its per-tab state.

One :class:`~engine.app.console.Console` per process, shared by every session
through ``st.cache_resource`` (the console is thread-safe) and closed when
the cache is cleared. Session state holds only one tab's UI choices, under
``recon_`` keys behind the small accessors below.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable
from typing import Any

import streamlit as st

from engine import settings as settings_mod
from engine.app import queries
from engine.app.console import Console
from engine.app.watcher import start_embedded
from engine.clock import clock_from_env
from engine.errors import EngineError
from engine.store.urls import safe_url

log = logging.getLogger(__name__)
REFRESH_S = 2.0  # how often live parts poll the engine
_PREFIX = "recon_"


# The embedded watcher's stop function per console (at most one console per process):
# stopped before its console closes, whichever way that happens.
_watchers: dict[int, Callable[[], None]] = {}


def _stop_watcher(console: Console) -> None:
    halt = _watchers.pop(id(console), None)
    if halt is not None:
        halt()


def _close(console: Console) -> None:
    atexit.unregister(_close_at_exit)  # one console per process: the only hook
    _stop_watcher(console)
    console.close()


def _close_at_exit(console: Console) -> None:
    _stop_watcher(console)
    try:
        console.close()
    except EngineError as exc:
        log.error("%s: queued writes were not saved; re-running the work rebuilds them", exc)


@st.cache_resource(show_spinner="Starting the engine…", on_release=_close)
def get_console() -> Console:
    """The process's engine: settings from the environment, background threads started."""
    # Where each value came from; RECON_TODAY moves today.
    console = Console(settings_mod.load_traced(), clock=clock_from_env())
    # Streamlit does not release cached resources when the server stops: flush then.
    atexit.register(_close_at_exit, console)
    console.start_background()
    # `make run` shows the month closing now: a watcher thread unless another watcher
    # runs or the setting [watch] embedded is off.
    halt = start_embedded(console)
    if halt is not None:
        _watchers[id(console)] = halt
    return console


def console_or_stop() -> Console:
    """The engine, or an error telling what to fix and a stopped script."""
    try:
        return get_console()
    except EngineError as exc:
        st.error(
            f"The engine could not start: {exc}. Fix the setting (settings file or RECON_* "
            "environment variables) and restart the dashboard."
        )
        st.stop()
        raise  # st.stop() raises; this keeps type checkers sure


def get(name: str, default: Any = None) -> Any:
    return st.session_state.get(_PREFIX + name, default)


def put(name: str, value: Any) -> None:
    st.session_state[_PREFIX + name] = value


def month() -> str:
    """The month the sidebar shows."""
    return str(st.session_state[_PREFIX + "month"])


def follow_month(value: str) -> None:
    """Make the sidebar show ``value`` from the next run on (a widget's value cannot change
    once it is drawn in a run)."""
    put("month_next", value)


def live() -> bool:
    """Whether live parts refresh themselves (the sidebar's pause toggle)."""
    return bool(get("live", True))


def sidebar(console: Console) -> None:
    """Month picker, live-refresh toggle and what the engine runs on."""
    options = queries.months(console)
    key = _PREFIX + "month"
    wanted = st.session_state.pop(_PREFIX + "month_next", None)
    if wanted is not None:
        st.session_state[key] = wanted
    if key not in st.session_state or st.session_state[key] not in options:
        chosen = st.session_state.get(key) or queries.default_month(console)
        options = sorted({*options, chosen}, reverse=True)
        st.session_state[key] = chosen
    st.session_state.setdefault(_PREFIX + "live", True)
    with st.sidebar:
        st.selectbox("Month", options, key=key, help="Target month of the month-end close")
        st.toggle("Live refresh", key=_PREFIX + "live", help="Pause to freeze the live parts")
        storage, source = console.settings.storage, console.settings.source
        st.caption(
            f"Database `{safe_url(storage.db_url)}` · {storage.mode} mode · "
            f"source `{source.source}`"
        )
