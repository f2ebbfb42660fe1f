"""Benchmark suites for ``recon bench``.

Each suite is a module in this package with ``run(*, quick: bool) -> dict[str, float]``
returning the suite's JSON fields. Timings are medians of several repetitions
after a warm-up; ratios compare against a baseline measured in the same run.
"""

from __future__ import annotations

SUITES = ("e2e", "storage", "cache", "batch", "monitor")
