"""A batch's settings: the runner's defaults with a user's values, checked and clamped."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

from engine.settings import BatchSettings, Settings, clamp


def batch_config(
    base: BatchSettings, config: Mapping[str, Any] | None
) -> tuple[BatchSettings, tuple[str, ...]]:
    """``base`` with a user's values (seed or field names) checked and clamped, and notes."""
    names = {f.metadata["seed"]: f.name for f in dataclasses.fields(BatchSettings)}
    values = {names.get(key, key): value for key, value in (config or {}).items()}
    merged = Settings(batch=base).with_values("batch", **values).batch
    notes = tuple(note for name, raw in values.items() if (note := _clamp_note(name, raw)))
    return merged, notes


def within_runner(
    settings: BatchSettings, runner: BatchSettings
) -> tuple[BatchSettings, tuple[str, ...]]:
    """A batch may ask for fewer workers than the runner has, never more."""
    limit = runner.max_concurrent_jobs
    if settings.max_concurrent_jobs <= limit:
        return settings, ()
    note = f"maxConcurrentJobs {settings.max_concurrent_jobs} limited to the runner's {limit}"
    return dataclasses.replace(settings, max_concurrent_jobs=limit), (note,)


def _clamp_note(name: str, raw: Any) -> str | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    with contextlib.suppress(ValueError):
        return clamp("batch", name, raw if not isinstance(raw, str) else float(raw))[1]
    return None


__all__ = ["batch_config", "within_runner"]
