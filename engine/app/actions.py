"""Changes a user asks for from a UI: clear caches, apply a setting, start a comparison.

Each function takes the :class:`~engine.app.console.Console`, validates what
the user typed (raising :class:`~engine.errors.ConfigError` and changing
nothing when it is wrong) and says what it did. Month-end runs start with
:meth:`~engine.app.console.Console.start_batch` (it holds the guard against two
batches on one month); reads are in :mod:`engine.app.queries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.app.queries import setting_text
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


_LIVE_CACHE_FIELDS = ("max_size", "ttl_ms", "enable_prefetch", "prefetch_threshold")


def apply_setting(console: Console, group: str, field: str, raw: str) -> SettingChange:
    """Validate a typed value and apply it where the running engine allows.

    Cache sizes, TTL and prefetch are tuned on every cache layer at once;
    batch settings are for the next batches to use; the rest takes effect on
    restart. Invalid values raise :class:`ConfigError` and change nothing.
    """
    rows = [r for r in describe(console.settings) if (r["group"], r["field"]) == (group, field)]
    if not rows:
        raise ConfigError(f"{group}.{field}", raw, "unknown setting")
    changed = console.settings.with_values(group, **{field: raw.strip()})
    value = getattr(getattr(changed, group), field)
    notes = _clamp_notes(group, field, raw, rows[0]["range"])
    if group == "cache" and field in _LIVE_CACHE_FIELDS:
        for layer in LAYERS:
            console.cache.tune(layer, **{field: value})
        applied = "applied now to every cache layer"
    elif group == "batch":
        applied = "used by the batches you start from now on (the Batch runs form)"
        limit = console.settings.batch.max_concurrent_jobs
        if field == "max_concurrent_jobs" and value > limit:
            notes += (f"this process runs at most {limit} items at once (restart to raise it)",)
    else:
        env = f"RECON_{group.upper()}_{field.upper()}={setting_text(value)}"
        applied = f"takes effect on restart: set {env} or [{group}] {field} in the settings file"
    return SettingChange(group, field, rows[0]["seed"], value, notes, applied)


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
    "start_comparison",
]
