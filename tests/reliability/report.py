"""RELIABILITY.md from test-output/reliability.json (``make reliability``).

The file records the suite run it comes from (time, commit, whether the working
tree had other changes, how many tests passed) and ends with a SHA-256 of
everything above it. ``python -m tests.reliability.report --check`` (and
tests/reliability/test_report.py, part of ``make test``) verifies that hash and
that the recorded run passed with a row for each of today's tests (:data:`TITLES`): a
hand edit, a report of a failing run, or one from before a row was added, fails.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .conftest import OUTPUT, ROOT

REPORT = ROOT / "RELIABILITY.md"
Run = Mapping[str, Any]  # test-output/reliability.json, as conftest writes it

TITLES = {
    "test_sigkill_at_random_points_then_rerun_matches_uninterrupted": "Crash during a run",
    "test_two_recon_runs_at_once_on_one_month_work_it_once": "Two `recon run` on one month",
    "test_api_batch_and_recon_run_on_one_month_work_it_once": "API batch + `recon run`, one month",
    "test_a_job_change_from_another_process_reaches_a_console": "Cross-process freshness",
    "test_thirty_percent_transient_failures_every_job_completes": "Transient source faults",
    "test_permanent_failures_fail_only_their_jobs_with_the_error_kept": "Permanent source faults",
    "test_database_locked_by_another_process_for_a_while": "Database locked by another process",
    "test_disk_write_failing_mid_run_then_resumed": "Disk writes failing mid-run",
    "test_a_postgres_restart_mid_batch_and_the_run_completes_as_uninterrupted": (
        "PostgreSQL restarted mid-batch"
    ),
    "test_fuzz_figures": "Parser fuzzing (hypothesis)",
    "test_read_endpoints_under_load_while_a_batch_runs": "API under load, token set",
    "test_eight_reader_threads_while_a_batch_runs": "Reader threads during a batch",
    "test_low_memory_threshold_throttles_then_completes": "Memory throttling",
    "test_memory_of_a_large_run_stays_bounded": "Memory of a large run",
}

EXPLANATION = """\
Each row is one test of `tests/reliability/` that tries to break the product.
*Configured* is what the test set up (sizes, fault rates, thread counts, hold
times); *measured* is what it counted in that run. `lost`, `extra` and
`differing` compare the whole database state after the fault (every run, every
job, every timeline entry with its metrics, changes and note, every month-end
snapshot; row ids and wall-clock times left out, see `tests/reliability/state.py`)
with an uninterrupted run of the same seed: rows only in the uninterrupted run,
rows only in the faulted one, and rows in both that differ."""

ALSO = """\
Also covered by the suite: invalid command-line arguments and settings exit with
code 2 and name the field; a hostile district id (`1'; DROP TABLE jobs;--`) is refused
by validation and, past it, stored as plain data through bound parameters; POST
endpoints refuse requests without the token when one is set, and `recon api` refuses a
non-loopback address without a token (tests/engine/api/test_api.py); the API is fuzzed
from its OpenAPI schema with no 5xx (tests/engine/api/test_api_fuzz.py). No pickle or
eval touches outside data."""

TABLE_HEADER = "| what was tried | outcome | configured | measured |"
SEAL = re.compile(r"^<!-- sha256 of the text above: ([0-9a-f]{64}) -->$")
SUMMARY = re.compile(r"^Suite: (\d+) passed, (\d+) failed, (\d+) skipped, (\d+) rows not run\.$")


def case_name(nodeid: str) -> str:
    return nodeid.split("::")[-1].split("[")[0]


def outcome_of(name: str, outcomes: Mapping[str, str]) -> str:
    """A row's outcome: failed if any of its test's cases failed."""
    found = {o for nodeid, o in outcomes.items() if case_name(nodeid) == name}
    return "failed" if "failed" in found else "passed" if "passed" in found else "not run"


def show(values: Mapping[str, object]) -> str:
    def one(value: object) -> str:
        if isinstance(value, Mapping):
            return "{" + ", ".join(f"{k}: {one(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(one(v) for v in value) + "]"
        return str(value)

    return ", ".join(f"{k.replace('_', ' ')}: {one(v)}" for k, v in sorted(values.items()))


def summary(run: Run) -> list[str]:
    outcomes: Mapping[str, str] = run["outcomes"]
    counts = {o: sum(1 for v in outcomes.values() if v == o) for o in ("passed", "failed")}
    skipped = sum(1 for v in outcomes.values() if v == "skipped")
    not_run = sum(1 for name in TITLES if outcome_of(name, outcomes) == "not run")
    lines = [
        f"Suite: {counts['passed']} passed, {counts['failed']} failed, {skipped} skipped, "
        f"{not_run} rows not run."
    ]
    failed = sorted(n for n, o in outcomes.items() if o == "failed")
    if failed:
        lines += ["", "Failed:", *(f"- `{n}`" for n in failed)]
    return lines


def body(run: Run) -> str:
    dirty = " with uncommitted changes in the working tree" if run["dirty"] else ""
    lines = [
        "# Reliability",
        "",
        f"Produced by `make reliability` from the suite run of {run['started']} "
        f"({run['duration_s']} s, {run['size']} sizes; `make soak` for the full sizes) "
        f"on commit `{run['commit']}`{dirty}.",
        "",
        *summary(run),
        "",
        EXPLANATION,
        "",
        TABLE_HEADER,
        "|---|---|---|---|",
    ]
    figures: Mapping[str, Mapping[str, Mapping[str, object]]] = run["figures"]
    outcomes: Mapping[str, str] = run["outcomes"]
    for name, title in TITLES.items():
        found = figures.get(name, {})
        cells = (show(found.get("config", {})), show(found.get("measured", {})))
        lines.append(f"| {title} | {outcome_of(name, outcomes)} | {cells[0]} | {cells[1]} |")
    return "\n".join([*lines, "", ALSO, ""])


def seal(text: str) -> str:
    """``text`` followed by the line holding its SHA-256."""
    return f"{text}<!-- sha256 of the text above: {hashlib.sha256(text.encode()).hexdigest()} -->\n"


def verify(report: str) -> list[str]:
    """What is wrong with a RELIABILITY.md: edited by hand, from a run that did not pass,
    or from a suite with other rows than today's."""
    text, _, last = report.rstrip("\n").rpartition("\n")
    sealed = SEAL.match(last)
    if sealed is None:
        return ["no sha256 line at the end: regenerate it with `make reliability`"]
    if hashlib.sha256(f"{text}\n".encode()).hexdigest() != sealed.group(1):
        return ["edited by hand (its sha256 does not match): regenerate it with `make reliability`"]
    found = next((m for line in text.splitlines() if (m := SUMMARY.match(line))), None)
    if found is None:
        return ["no 'Suite: ...' line: regenerate it with `make reliability`"]
    passed, failed, _, not_run = (int(g) for g in found.groups())
    problems = [f"{failed} tests failed in the recorded run"] if failed else []
    problems += [f"{not_run} rows were not run"] if not_run else []
    problems += [] if passed else ["no test passed in the recorded run"]
    return problems + stale_rows(text)


def stale_rows(text: str) -> list[str]:
    """The suite's rows a report lacks, and rows it holds that no test makes now: the
    report of a run before a row's test was added (or renamed) is not this suite's."""
    shown = [
        line.split(" | ")[0].removeprefix("| ")
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith(TABLE_HEADER)
    ]
    missing = [t for t in TITLES.values() if t not in shown]
    extra = [r for r in shown if r not in TITLES.values()]
    return [
        f"{what} {', '.join(names)}: regenerate it with `make reliability`"
        for what, names in (("no row for", missing), ("rows no test makes:", extra))
        if names
    ]


def main(argv: Sequence[str] = ()) -> int:
    if "--check" in argv:
        problems = verify(REPORT.read_text())
        for problem in problems:
            print(f"RELIABILITY.md: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if not OUTPUT.exists():
        print(f"{OUTPUT} not found: run the reliability tests first", file=sys.stderr)
        return 2
    REPORT.write_text(seal(body(json.loads(OUTPUT.read_text()))))
    print(f"RELIABILITY.md written: {summary(json.loads(OUTPUT.read_text()))[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
