"""Settings: every value with its seed name, default and valid range; change what can be."""

from __future__ import annotations

import runtime
import streamlit as st
import ui

from engine.app import actions, queries

console = runtime.get_console()
GROUPS = ("recon", "cache", "storage", "batch", "monitor", "source", "api", "watch")
COLUMNS = {
    "field": "Field",
    "seed": "Seed name",
    "value": "Value",
    "default": "Default",
    "range": "Valid range",
    "doc": st.column_config.TextColumn("Notes", width="large"),
}

st.title("Settings")
st.markdown(
    "Values come from the defaults, then the settings file (`RECON_SETTINGS`), then "
    "`RECON_<GROUP>_<FIELD>` environment variables. Cache settings can change while the "
    "engine runs; batch settings apply to the batches you start next; the rest on restart."
)

rows = queries.settings_rows(console.settings)
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
with st.form("change_setting"):
    raw = st.text_input(
        "New value", value=row["value"], help=f"Valid range: {row['range'] or 'any'}"
    )
    st.caption(f"Default {row['default'] or '(none)'} · range {row['range'] or 'any'}")
    if st.form_submit_button("Apply"):
        with ui.guard():
            change = actions.apply_setting(console, row["group"], row["field"], raw)
            if row["group"] == "batch":
                runtime.put(
                    "batch_defaults",
                    {**runtime.get("batch_defaults", {}), change.field: change.value},
                )
            st.success(f"{change.seed} = {change.value}: {change.applied}.")
            for note in change.notes:
                st.warning(f"Clamped: {note}", icon=":material/warning:")
