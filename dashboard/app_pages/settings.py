"""Settings: every value with its seed name, default, valid range and where it came from;
change what the running process can take."""

from __future__ import annotations

import runtime
import streamlit as st
import ui

from engine.app import actions, queries

console = runtime.get_console()
GROUPS = ("recon", "cache", "storage", "batch", "monitor", "source", "api", "notify", "watch")
COLUMNS = {
    "field": "Field",
    "seed": "Seed name",
    "value": "Value",
    "origin": st.column_config.TextColumn(
        "From", help="default, file, environment, command line, or changed here"
    ),
    "applies": st.column_config.TextColumn("Change applies", help="now, or on restart"),
    "default": "Default",
    "range": "Valid range",
    "doc": st.column_config.TextColumn("Notes", width="large"),
}

st.title("Settings")
st.markdown(
    "Values come from the defaults, then the settings file (`RECON_SETTINGS`), then "
    "`RECON_<GROUP>_<FIELD>` environment variables, then the command line. Cache and batch "
    "settings can change here, for the whole process (every tab) until it restarts; the "
    "rest need a restart."
)

rows = queries.settings_rows(console.live_settings)
for tab, group in zip(st.tabs(list(GROUPS)), GROUPS, strict=True):
    with tab:
        ui.table(
            [r for r in rows if r["group"] == group],
            column_order=tuple(COLUMNS),
            column_config=COLUMNS,
        )

st.subheader("Change a setting")
ordered = sorted(rows, key=lambda r: GROUPS.index(r["group"]))
choices = {f"{r['group']}.{r['field']} ({r['seed']})": r for r in ordered}
label = st.selectbox("Setting", list(choices), key="setting_choice")
row = choices[label]
st.caption(
    f"Now {row['value'] or '(none)'} ({row['origin']}) · default {row['default'] or '(none)'} "
    f"· range {row['range'] or 'any'}"
)
if row["applies"] == queries.RESTART:
    st.info(
        f"{row['seed']} needs a restart: {queries.restart_hint(row['group'], row['field'])}, "
        "then restart the dashboard.",
        icon=":material/restart_alt:",
    )
else:
    with st.form("change_setting"):
        raw = st.text_input(
            "New value", value=row["value"], help=f"Valid range: {row['range'] or 'any'}"
        )
        if st.form_submit_button("Apply"):
            with ui.guard():
                change = actions.apply_setting(console, row["group"], row["field"], raw)
                shown = queries.setting_text(change.value)
                done = f"{change.seed} = {shown}: {change.applied}, until the process restarts."
                runtime.put("setting_done", (done, change.notes))
                st.rerun()  # the tables above show the new value

last = runtime.get("setting_done")
if last is not None:
    done, notes = last
    st.success(done, icon=":material/check_circle:")
    for note in notes:
        st.warning(f"Clamped: {note}", icon=":material/warning:")
