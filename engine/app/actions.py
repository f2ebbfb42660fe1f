"""Changes a user asks for from a UI: clear caches, apply a setting, start a comparison.

Each function takes the :class:`~engine.app.console.Console`, validates what
the user typed (raising :class:`~engine.errors.ConfigError` and changing
nothing when it is wrong) and says what it did. Month-end runs start with
:meth:`~engine.app.console.Console.start_batch` (it holds the guard against two
batches on one month); reads are in :mod:`engine.app.queries`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.app import viewers
from engine.app.queries import LIVE_CACHE_FIELDS, RESTART, applies, restart_hint
from engine.app.tasks import Report
from engine.bench.e2e import FULL, STEP_LABELS, STEPS, Size, compare
from engine.cache import LAYERS
from engine.errors import ConfigError
from engine.settings import clamp, describe
from engine.sources.sim import DISTRICTS
from engine.store.bench import BenchStore

if TYPE_CHECKING:
    from engine.app.console import Console

# --- caches --------------------------------------------------------------------------------

CLEAR_TARGETS = {
    "All cache layers": "layers",
    **{f"Layer: {layer}": layer for layer in LAYERS},
    "Storage cache": "storage",
    "Everything (cache layers and storage cache)": "everything",
}
"""What :func:`clear_caches` can clear: label for a user -> target."""


def clear_caches(console: Console, target: str) -> int:
    """Empty ``target`` (a value of :data:`CLEAR_TARGETS`); return the entries removed."""
    if target not in CLEAR_TARGETS.values():
        raise ConfigError("target", target, f"expected one of {', '.join(CLEAR_TARGETS.values())}")
    removed = 0
    if target in ("layers", "everything"):
        removed += console.cache.clear()
    if target in ("storage", "everything"):
        removed += console.storage.clear_cache()
    if target in LAYERS:
        removed += console.cache.clear(target)
    return removed


# --- viewer load ---------------------------------------------------------------------------

VIEWER_LOAD = "viewer load"  # the task's name


def start_viewer_load(console: Console, *, month: str, readers: int, seconds: float) -> int:
    """Start ``readers`` simulated dashboard/API readers of ``month`` for ``seconds`` as a
    background task (see :mod:`engine.app.viewers`); return the task id. Its progress
    counts seconds; its result is :class:`~engine.app.viewers.ViewerLoad` as a dict.
    Out-of-range values raise :class:`ConfigError` and start nothing."""
    readers, seconds = viewers.validate(readers, seconds)
    month = viewers.month_jobs(console, month)[0]
    total = max(1, round(seconds))
    return console.tasks.start(
        VIEWER_LOAD,
        lambda report: viewers.run_viewer_load(console, month, readers, seconds, report),
        total=total,
    )


# --- before / after ------------------------------------------------------------------------

COMPARISON_SUITE = "e2e-dashboard"  # results of the Before / after page, beside ``recon bench``'s
COMPARISON_LIMITS = {
    "districts": (1, len(DISTRICTS)),
    "latency_ms": (0, 1000),
    "closing_days": (0, 62),
    "concurrency": (1, 20),
}


def start_comparison(
    console: Console, *, districts: int, latency_ms: float, closing_days: int, concurrency: int
) -> int:
    """Run the same month-end workload in naive and optimized mode as a background task.

    Returns the task id (see ``console.tasks``); the task's progress counts the
    districts of every step (:data:`engine.bench.e2e.STEPS`) from the start; its
    result is the benchmark's figures, also stored in ``bench_results`` as
    :data:`COMPARISON_SUITE`, as a quick run unless it is the full-size workload
    (:data:`engine.bench.e2e.FULL`), which only then headlines the page.
    """
    params: dict[str, Any] = {
        "districts": districts,
        "latency_ms": latency_ms,
        "closing_days": closing_days,
        "concurrency": concurrency,
    }
    for name, (lo, hi) in COMPARISON_LIMITS.items():
        if not lo <= params[name] <= hi:
            raise ConfigError(name, params[name], f"expected {lo} to {hi}")

    quick = Size(**params) != FULL
    total = districts * len(STEPS)

    def work(report: Report) -> dict[str, Any]:
        result = _compare(params, report)
        stored = {**params, **result}
        BenchStore(console.storage).add(
            COMPARISON_SUITE, stored, quick=quick, when=console.clock.now()
        )
        return {**stored, "quick": quick}

    return console.tasks.start("before/after comparison", work, total=total)


def _compare(params: dict[str, Any], report: Report) -> dict[str, Any]:
    def progress(step: str, done: int, total: int) -> None:
        before = STEPS.index(step) * total  # the steps run one after the other
        report(
            before + done, len(STEPS) * total, f"{STEP_LABELS[step]}: {done} of {total} districts"
        )

    return compare(**params, on_progress=progress)


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingChange:
    group: str
    field: str
    seed: str
    value: Any
    """The validated (and clamped) value."""
    notes: tuple[str, ...]
    """What clamping changed."""
    applied: str
    """How the change takes effect, for the user."""


def apply_setting(console: Console, group: str, field: str, raw: str) -> SettingChange:
    """Validate a typed value and apply it to the whole process, where it can change.

    Cache sizes, TTL and prefetch are tuned on every cache layer at once; batch
    settings become the process's defaults (``maxConcurrentJobs`` its limit too).
    Settings that need a restart change nothing here: ``applied`` says how to set
    them. Invalid values raise :class:`ConfigError` and change nothing.
    """
    rows = [r for r in describe(console.settings) if (r["group"], r["field"]) == (group, field)]
    if not rows:
        raise ConfigError(f"{group}.{field}", raw, "unknown setting")
    notes = _clamp_notes(group, field, raw, rows[0]["range"])
    if applies(group, field) == RESTART:
        changed = console.settings.with_values(group, **{field: raw.strip()})
        value = getattr(getattr(changed, group), field)
        applied = f"takes effect on restart: {restart_hint(group, field, value)}"
        return SettingChange(group, field, rows[0]["seed"], value, notes, applied)
    value = getattr(getattr(console.live_settings.change(group, field, raw.strip()), group), field)
    if group == "cache":
        for layer in LAYERS:
            console.cache.tune(layer, **{field: value})
    else:
        console.batch.reconfigure(console.settings.batch)
    return SettingChange(group, field, rows[0]["seed"], value, notes, _applied(group, field))


def _applied(group: str, field: str) -> str:
    if group == "cache":
        return "applied now to every cache layer"
    if field == "max_concurrent_jobs":
        return (
            "this process now runs at most this many items at once, and the Batch runs form "
            "of every tab starts with it"
        )
    return "used by the Batch runs form of every tab and the batches started from now on"


def save_cache_settings(console: Console, path: str | None = None) -> Path:
    """Write the process's ``[cache]`` values into a TOML settings file so that they last
    past a restart; the file's other tables are kept. ``path``: default the file this
    process loaded (``RECON_SETTINGS``), else it is required. Returns the file written.
    """
    target = Path(path) if path else console.live_settings.path
    if target is None:
        raise ConfigError("settings file", None, "this process loaded none: give a path")
    try:
        tables = tomllib.loads(target.read_text()) if target.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("settings file", str(target), f"cannot be read: {exc}") from exc
    cache = console.settings.cache
    tables["cache"] = {
        **tables.get("cache", {}),
        **{f: getattr(cache, f) for f in LIVE_CACHE_FIELDS},
    }
    try:
        target.write_text(_toml(tables))
    except OSError as exc:
        raise ConfigError("settings file", str(target), f"cannot be written: {exc}") from exc
    return target


def _toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Settings tables as TOML (values are strings, numbers and booleans)."""
    out = []
    for name, values in tables.items():
        out.append(f"[{name}]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def _clamp_notes(group: str, field: str, raw: str, rng: Any) -> tuple[str, ...]:
    if rng is None:
        return ()
    try:
        note = clamp(group, field, float(raw))[1]
    except ValueError:
        return ()
    return (note,) if note else ()


__all__ = [
    "CLEAR_TARGETS",
    "COMPARISON_LIMITS",
    "COMPARISON_SUITE",
    "SettingChange",
    "apply_setting",
    "clear_caches",
    "save_cache_settings",
    "start_comparison",
    "start_viewer_load",
    "VIEWER_LOAD",
]
