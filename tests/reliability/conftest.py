"""Shared fixtures of the reliability suite.

``figures`` records what a test did (faults injected, inputs tried, requests
made, anything lost) into ``test-output/reliability.json``; ``make reliability``
turns that file into RELIABILITY.md. ``SOAK=1`` selects the full sizes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "reliability.json"
_lock = threading.Lock()


def soak() -> bool:
    return os.environ.get("SOAK") == "1"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    found: dict[str, Any] = {}

    def record(**values: Any) -> None:
        found.update(values)

    yield record
    if not found:
        return
    with _lock:
        OUTPUT.parent.mkdir(exist_ok=True)
        data = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else {}
        data[request.node.originalname] = {"size": "soak" if soak() else "ci", **found}
        OUTPUT.write_text(json.dumps(data, indent=2, sort_keys=True))
