"""Cache: hit rates, counters and sizes per layer; clear, tune and try other settings."""

from __future__ import annotations

from dataclasses import asdict

import plotly.express as px
import plotly.graph_objects as go
import runtime
import streamlit as st
import ui

from engine.app import actions, queries, viewers
from engine.app.tasks import TaskStatus
from engine.cache import LAYERS, POLICIES
from engine.readtrace import TRACE_KEYS
from engine.store.storage import StorageCacheStats

console = runtime.get_console()
CACHE_COLUMNS = {
    "layer": "Layer",
    "hits": "Hits",
    "misses": "Misses",
    "evictions": "Evictions",
    "expirations": "Expirations",
    "prefetches": "Prefetches",
    "prefetch_hits": "Prefetch hits",
    "size": "Entries",
    "hit_rate": st.column_config.ProgressColumn(
        "Hit rate", min_value=0, max_value=1, format="percent"
    ),
    "hit_mean_us": st.column_config.NumberColumn("Hit µs (mean)", format="%.1f"),
    "hit_p95_us": st.column_config.NumberColumn("Hit µs (p95)", format="%.1f"),
    "miss_mean_us": st.column_config.NumberColumn("Miss µs (mean)", format="%.1f"),
    "miss_p95_us": st.column_config.NumberColumn("Miss µs (p95)", format="%.1f"),
    "max_size": "Max size",
}
st.title("Cache")


ALL_CACHES_COLUMNS = {
    "cache": "Cache",
    "serves": "Serves",
    "hits": "Hits",
    "misses": "Misses",
    "hit_rate": "Hit rate",
    "size": "Entries",
    "limit": "Limit",
}


def every_cache() -> None:
    """Every cache of the process, the month-end work's too, hit rates as text ("–": no reads)."""
    st.subheader("Every cache in this process")
    rows = [{**r, "hit_rate": ui.percent(r["hit_rate"])} for r in queries.all_caches(console)]
    ui.table(rows, key="all_caches", column_config=ALL_CACHES_COLUMNS)
    st.caption(
        "The read cache's layers serve the dashboard, API and CLI; the storage cache and the "
        "source's day summaries and row memo serve the month-end checks of this process (a "
        "`recon run` in another process has caches of its own)."
    )


def statistics() -> bool:
    st.subheader("Read cache layers")
    rows = queries.cache_rows(console)
    total = rows[-1]
    storage = console.storage.cache_stats()
    cols = st.columns(5)
    cols[0].metric(
        "Hit rate",
        ui.percent(queries.cache_hit_rate(console)),
        help="Every layer since the start, as on the Performance page; – until the first read",
    )
    cols[1].metric("Entries", f"{total['size']} / {total['max_size']}")
    cols[2].metric("Evictions", total["evictions"])
    cols[3].metric("Prefetches", total["prefetches"], help=f"{total['prefetch_hits']} were hit")
    cols[4].metric("Storage cache entries", storage.size + storage.index_size)
    ui.table(
        [{**r, "hit_rate": ui.percent(r["hit_rate"])} for r in rows],
        key="cache_table",
        column_config={**CACHE_COLUMNS, "hit_rate": "Hit rate"},
    )
    left, mid, right = st.columns(3)
    with left:
        hit_rate_chart()
    with mid:
        size_chart(rows[:-1])
    with right:
        latency_chart(rows[:-1])
    storage_cache(storage)
    every_cache()
    return True


def hit_rate_chart() -> None:
    history = queries.cache_history(console)
    if not history:
        st.info("The hit rate over time appears after the first samples (every 5 s).")
        return
    fig = px.line(history, x="time", y="hit_rate", color="layer")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="hit rate")
    st.plotly_chart(ui.layout(fig, "Hit rate over time (since start)"), key="hit_rate")


def size_chart(rows: list[dict[str, object]]) -> None:
    fig = go.Figure(
        go.Bar(
            x=[r["layer"] for r in rows],
            y=[100 * r["size"] / r["max_size"] for r in rows],
            text=[f"{r['size']} / {r['max_size']}" for r in rows],
            textposition="outside",
            marker_color=ui.STATE_COLORS["monitoring"],
        )
    )
    fig.update_yaxes(range=[0, 105], title="% of maxSize")
    st.plotly_chart(ui.layout(fig, "Sizes against limits"), key="sizes")


def latency_chart(rows: list[dict[str, object]]) -> None:
    layers = [r["layer"] for r in rows]
    fig = go.Figure(
        [
            go.Bar(name="hit", x=layers, y=[r["hit_mean_us"] for r in rows]),
            go.Bar(name="miss (with load)", x=layers, y=[r["miss_mean_us"] for r in rows]),
        ]
    )
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="log", dtick=1, title="mean µs (log)")
    st.plotly_chart(ui.layout(fig, "Hit and miss latency"), key="latency")


def storage_cache(stats: StorageCacheStats) -> None:
    st.subheader("Storage cache")
    cols = st.columns(6)
    cols[0].metric("Jobs cached", stats.size, help=f"of cacheMaxSize {stats.cache_max_size}")
    cols[1].metric("Index entries", stats.index_size)
    reads = stats.hits + stats.misses
    cols[2].metric("Storage hit rate", ui.percent(stats.hits / reads if reads else None))
    cols[3].metric("Hits / misses", f"{stats.hits} / {stats.misses}")
    cols[4].metric("Pending writes", stats.pending_writes)
    cols[5].metric("DB round trips", stats.roundtrips)
    if not stats.enable_in_memory_cache:
        st.caption("The storage cache is off (naive mode or enableInMemoryCache false).")


def clear_section() -> None:
    st.subheader("Clear caches")
    label = st.selectbox("What to clear", list(actions.CLEAR_TARGETS), key="clear_target")
    if st.button("Clear caches", icon=":material/delete_sweep:"):
        runtime.put("confirm_clear", label)
    pending = runtime.get("confirm_clear")
    if pending:
        st.warning(f"Clear {pending.lower()}? The next reads go to the database.")
        yes, no = st.columns(2)
        if yes.button("Yes, clear", type="primary"):
            with ui.guard():
                removed = actions.clear_caches(console, actions.CLEAR_TARGETS[pending])
                runtime.put("cleared", f"Cleared {pending.lower()}: {removed} entries removed.")
            runtime.put("confirm_clear", None)
            st.rerun()
        if no.button("Cancel"):
            runtime.put("confirm_clear", None)
            st.rerun()
    if runtime.get("cleared"):
        st.success(runtime.get("cleared"), icon=":material/check_circle:")


def tune_section() -> None:
    st.subheader("Tune a layer")
    st.caption(
        "A layer tuned here runs with its values until this process restarts. To keep values "
        "for every layer, change the cache settings on the Settings page and save them below."
    )
    layer = st.selectbox("Layer", LAYERS, key="tune_layer")
    current = console.cache.config().layers[layer]
    with st.form("tune"):
        a, b = st.columns(2)
        size = a.number_input("maxSize", value=current.max_size, step=50)
        ttl = b.number_input("ttlMs", value=current.ttl_ms, step=10_000)
        chosen = POLICIES.index(current.eviction_policy)
        policy = a.selectbox("Eviction policy", POLICIES, chosen)
        threshold = b.number_input("prefetchThreshold", value=current.prefetch_threshold)
        prefetch = st.checkbox("enablePrefetch", value=current.enable_prefetch)
        if st.form_submit_button("Apply"):
            with ui.guard():
                notes = console.cache.tune(
                    layer,
                    max_size=size,
                    ttl_ms=ttl,
                    policy=policy,
                    enable_prefetch=prefetch,
                    prefetch_threshold=threshold,
                )
                st.success(f"Layer {layer} runs with the values above until a restart.")
                for note in notes:
                    st.warning(f"Clamped: {note}")


def persist_section() -> None:
    st.subheader("Keep the cache settings past a restart")
    cache = console.settings.cache
    loaded = console.live_settings.path
    origins = {f: console.live_settings.origin("cache", f) for f in queries.LIVE_CACHE_FIELDS}
    st.markdown(
        "This process's cache settings: "
        + ", ".join(f"`{f}` = {queries.setting_text(getattr(cache, f))} ({origins[f]})"
                    for f in queries.LIVE_CACHE_FIELDS)
    )  # fmt: skip
    changed = [f for f, o in origins.items() if o == "changed here"]
    if changed:
        st.warning(f"Changed here, lost on restart unless saved: {', '.join(changed)}.")
    with st.form("persist"):
        path = st.text_input(
            "Settings file", value=str(loaded) if loaded else "recon.toml",
            help="The file this process loaded (RECON_SETTINGS), or another; start the "
            "engine with RECON_SETTINGS pointing at it",
        )  # fmt: skip
        if st.form_submit_button("Save to settings file", icon=":material/save:"):
            with ui.guard():
                written = actions.save_cache_settings(console, path.strip() or None)
                st.success(f"Saved [cache] to {written}: the values last past a restart.")


def latest_viewer_load() -> TaskStatus | None:
    """The newest viewer load of this process (any tab started it)."""
    return next((t for t in console.tasks.recent() if t.name == actions.VIEWER_LOAD), None)


def viewer_load_section() -> None:
    st.subheader("Viewer load")
    st.caption(
        "Simulated dashboard/API readers, each a thread in the engine reading the sidebar's "
        "month over and over: its status, its jobs list and a job's timeline, through the read "
        "cache. Their calls are labelled *viewers* on the Performance page, apart from the "
        "engine's figures."
    )
    running = (latest := latest_viewer_load()) is not None and not latest.finished
    with st.form("viewer_load"):
        a, b = st.columns(2)
        readers = a.number_input("Readers", *viewers.READERS, value=10, step=1)
        seconds = b.number_input("Duration (s)", 1, int(viewers.SECONDS[1]), value=60, step=10)
        start = st.form_submit_button(
            "Start", icon=":material/group:", type="primary", disabled=running,
            help="One load at a time" if running else None,
        )  # fmt: skip
        if start:
            with ui.guard():
                actions.start_viewer_load(
                    console, month=runtime.month(), readers=int(readers), seconds=float(seconds)
                )
                st.rerun()
    if latest is not None or running:
        ui.live_fragment(viewer_load_progress, active=running)


def viewer_load_progress() -> bool:
    status = latest_viewer_load()
    if status is None:
        return False
    if not status.finished:
        st.progress(status.fraction, text=f"Viewer load: {status.message}")
        return True
    if status.error:
        st.error(f"The viewer load failed: {status.error}. Run a batch of the month, then retry.")
        return False
    r = status.result
    st.markdown(
        f"Last viewer load: **{r['readers']} readers** on {r['month']} for {r['seconds']:.0f} s"
        + (f" · {r['errors']} reads failed ({r['first_error']})" if r["errors"] else "")
    )
    cols = st.columns(4)
    cols[0].metric("Reads done", f"{r['reads']:,}")
    cols[1].metric("Reads / s", f"{r['reads_per_s']:,.0f}")
    cols[2].metric("Reads / s per reader", f"{r['per_reader_reads_per_s']:,.0f}")
    cols[3].metric(
        "Read cache hit rate", ui.percent(r["hit_rate"]),
        help=f"During the load, every layer: {r['cache_hits']:,} hits, {r['cache_misses']:,} "
        "misses",
    )  # fmt: skip
    alone, uncached = r["alone_reads_per_s"], r["alone_uncached_reads_per_s"]
    if alone and uncached:
        st.caption(
            f"One reader alone, right after: {alone:,.0f} reads/s through the read cache, "
            f"{uncached:,.0f} reads/s without it ({alone / uncached:.1f}×)."
        )
    return False


def what_if_section() -> None:
    st.subheader("What if? Replay the recorded reads against other sizes and TTLs")
    st.caption(
        f"Every cache records its last {TRACE_KEYS:,} reads, writes and invalidations, and "
        "whose they were: the engine's work, the dashboard, the API or simulated viewers. "
        "The replay runs them through an LRU cache with an expiry (ttlMs) at each size."
    )
    names = list(queries.traced_caches(console))
    with st.form("what_if"):
        a, b = st.columns(2)
        cache = a.selectbox("Cache", names, index=names.index("storage cache"), key="wi_cache")
        origin = b.selectbox("Whose reads", queries.ORIGIN_CHOICES, key="wi_origin")
        sizes = a.text_input(
            "Sizes (entries)", "", help=f"Comma-separated; empty: {queries.WHAT_IF_POINTS} "
            "sizes evenly spaced up to the distinct keys read",
        )  # fmt: skip
        ttls = b.text_input("ttlMs values", "60000, 300000")
        if st.form_submit_button("Simulate"):
            with ui.guard():
                found = queries.what_if(console, cache, origin=origin, sizes=sizes, ttls=ttls)
                runtime.put("what_if", found)
    found = runtime.get("what_if")
    if found is not None:
        what_if_result(found)


WHOSE = {"work": "the engine's work", "dashboard": "the dashboard", "api": "the API"}


def what_if_result(found: queries.WhatIf) -> None:
    whose = f"by {WHOSE.get(found.origin, found.origin)}" if found.origin else "by anyone"
    mix = ", ".join(f"{who} {n:,}" for who, n in found.origins.items()) or "none"
    st.markdown(
        f"**{found.cache}**: replayed {found.reads:,} recorded reads {whose}, "
        f"{found.keys:,} distinct keys (reads in the trace by origin: {mix})."
    )
    if found.refused:
        st.info(found.refused, icon=":material/info:")
        return
    rows = [{**asdict(r), "ttl": f"ttlMs {r.ttl_ms:,}"} for r in found.rows]
    fig = px.line(rows, x="max_size", y="hit_rate", color="ttl", markers=True)
    fig.update_xaxes(title="cache size (entries)", rangemode="tozero", nticks=8)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="hit rate")
    limit = {r["cache"]: r["limit"] for r in queries.all_caches(console)}.get(found.cache)
    if limit and limit <= 1.2 * max(r["max_size"] for r in rows):
        fig.add_vline(x=limit, line_dash="dot", annotation_text=f"current limit {limit:,}")
    title = f"Hit rate by size: {found.cache}, {found.reads:,} reads"
    st.plotly_chart(ui.layout(fig, title, 380), key="what_if_chart")


with ui.guard():
    ui.live_fragment(statistics, active=True)
st.divider()
left, right = st.columns(2)
with left:
    clear_section()
with right:
    tune_section()
persist_section()
st.divider()
viewer_load_section()
st.divider()
what_if_section()
