"""Performance regression testing: a run's figures against a stored run's.

``recon bench --against ID|FILE`` (a ``bench_results`` id or a ``--json`` file)
compares each figure two runs share. A figure *moved* when the two values are
further apart than the two runs' spreads allow: a timing with a ``<field>_spread``
by the sum of both spreads; a figure without one (a ratio, a rate) by the largest
relative spread of its suite's timings in either run, applied to both values.
A moved figure with a target is *worse* or *better* by the target's direction;
a worse targeted figure is a regression (``recon bench`` exits 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.bench import SUITES, TARGETS, numbers
from engine.errors import ConfigError
from engine.store.bench import BenchStore, Transactions

Results = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Baseline:
    """A stored run to compare with: its suites' results and where they came from."""

    name: str
    quick: bool
    results: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Movement:
    """One figure of two runs."""

    suite: str
    field: str
    before: float
    after: float
    tolerance: float
    """How far apart the two values may be before the figure counts as moved."""
    verdict: str
    """"same", "better", "worse" (a targeted figure that moved) or "moved"."""
    targeted: bool

    @property
    def regression(self) -> bool:
        return self.targeted and self.verdict == "worse"


def load(ref: str, storage: Transactions) -> Baseline:
    """The run ``ref`` names: a ``bench_results`` id (digits) or a ``recon bench --json`` file."""
    if ref.isdigit():
        record = BenchStore(storage).get(int(ref))
        return Baseline(f"#{record.id}", record.quick, {record.suite: record.result})
    try:
        report = json.loads(Path(ref).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("against", ref, "expected a stored result's id or a --json file") from exc
    if not isinstance(report, dict):
        raise ConfigError("against", ref, "not a recon bench --json report")
    suites = {k: v for k, v in report.items() if k in SUITES and isinstance(v, dict)}
    return Baseline(ref, bool(report.get("quick")), suites)


def compare(before: Results, after: Results) -> list[Movement]:
    """Every figure of the suites both runs have, in ``after``'s order."""
    common = [suite for suite in after if suite in before]
    if not common:
        raise ConfigError("against", sorted(before), f"no suite in common with {sorted(after)}")
    found = []
    for suite in common:
        old, new = numbers(before[suite]), numbers(after[suite])
        relative = max(_relative_spread(old), _relative_spread(new))
        for field in new:
            if field in old and not _is_spread(field) and field != "repetitions":
                tolerance = _tolerance(field, old, new, relative)
                found.append(_movement(suite, field, old[field], new[field], tolerance))
    return found


def _movement(suite: str, field: str, before: float, after: float, tolerance: float) -> Movement:
    target = TARGETS.get(suite, {}).get(field)
    verdict = "same"
    if abs(after - before) > tolerance:
        verdict = "moved"
        if target is not None:
            higher_is_better = target.op == ">="
            verdict = "better" if (after > before) == higher_is_better else "worse"
    return Movement(suite, field, before, after, tolerance, verdict, target is not None)


def _is_spread(field: str) -> bool:
    return field.endswith("_spread") or "_spread_" in field


def _tolerance(
    field: str, old: Mapping[str, float], new: Mapping[str, float], relative: float
) -> float:
    spread = f"{field}_spread"
    if spread in old and spread in new:
        return old[spread] + new[spread]
    return relative * (abs(old[field]) + abs(new[field]))


def _relative_spread(fields: Mapping[str, float]) -> float:
    """The largest ``spread / value`` of the suite's timings (0 without any)."""
    ratios = [
        fields[f"{field}_spread"] / abs(value)
        for field, value in fields.items()
        if f"{field}_spread" in fields and value
    ]
    return max(ratios, default=0.0)


__all__ = ["Baseline", "Movement", "compare", "load"]
