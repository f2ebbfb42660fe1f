"""RELIABILITY.md comes from a reliability suite run that passed, unedited.

Part of ``make test`` (and so of CI), which checks the committed file without
regenerating it: ``make reliability`` regenerates it.
"""

from __future__ import annotations

from typing import Any

from .report import REPORT, TITLES, body, seal, verify


def a_run(**outcomes: str) -> dict[str, Any]:
    """A recorded suite run where every row's test passed unless ``outcomes`` says otherwise."""
    names = {name: outcomes.get(name, "passed") for name in TITLES}
    return {
        "started": "2026-01-01T00:00:00+00:00", "duration_s": 60, "size": "ci",
        "commit": "0" * 40, "dirty": False,
        "outcomes": {f"tests/reliability/test_x.py::{n}": o for n, o in names.items()},
        "figures": {n: {"config": {"districts": 24}, "measured": {"lost": 0}} for n in names},
    }  # fmt: skip


def test_the_committed_report_is_from_a_passing_run_and_unedited() -> None:
    assert verify(REPORT.read_text()) == []


def test_a_sealed_report_of_a_passing_run_verifies() -> None:
    assert verify(seal(body(a_run()))) == []


def test_a_hand_edit_is_caught() -> None:
    edited = seal(body(a_run())).replace("lost: 0", "lost: 1", 1)
    assert verify(edited) == [
        "edited by hand (its sha256 does not match): regenerate it with `make reliability`"
    ]
    assert "no sha256 line" in verify(body(a_run()))[0]


def test_a_report_of_a_failing_or_partial_run_is_refused() -> None:
    failing = a_run(test_fuzz_figures="failed")
    assert verify(seal(body(failing))) == ["1 tests failed in the recorded run"]
    partial = a_run()
    del partial["outcomes"][next(iter(partial["outcomes"]))]
    assert verify(seal(body(partial))) == ["1 rows were not run"]


def test_a_report_from_before_a_row_was_added_is_refused() -> None:
    """A report of the suite as it was before a test was added (the committed one lacked
    'PostgreSQL restarted mid-batch' for a while, and verified) or renamed."""
    rows = body(a_run()).splitlines(keepends=True)
    older = "".join(r for r in rows if not r.startswith("| Parser fuzzing (hypothesis) |"))
    renamed = body(a_run()).replace("| Memory of a large run |", "| Memory, large run |", 1)
    assert verify(seal(older)) == [
        "no row for Parser fuzzing (hypothesis): regenerate it with `make reliability`"
    ]
    assert verify(seal(renamed)) == [
        "no row for Memory of a large run: regenerate it with `make reliability`",
        "rows no test makes: Memory, large run: regenerate it with `make reliability`",
    ]
