"""Error answers are always JSON: bad input gets 4xx naming the field, never a 500.

Python's JSON decoder accepts NaN, Infinity and lone surrogates; echoing them
in a 422 used to fail the encoder (500) and reset the connection. Whether the
connection survives is the server's business, so that part runs against a
real ``recon api`` process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.errors import safe
from tests.engine.api.procs import recon_api

PERF = "/api/reconciliation/performance"
JOBS = "/api/reconciliation/jobs"
POSTS = [f"{PERF}/cache/clear", f"{PERF}/batch/process", JOBS]
NO_BODY_POSTS = [f"{PERF}/batch/4242/cancel", f"{JOBS}/4242/cancel"]
BAD_BODIES = {
    b'{"clearCache":NaN}': "clearCache",
    b'{"clearCache":Infinity}': "clearCache",
    b'{"clearStorage":-Infinity}': "clearStorage",
    b'{"targetMonth":"\\udcff"}': "targetMonth",
    b'{"jobs":[{"districtId":"1","targetMonth":"2025-06","priority":NaN}]}': "jobs",
    b'{"targetMonth":"2025-06","districtIds":["\\ud800"]}': "targetMonth",
    b'{"\\udcff":1e400}': "body",  # a key JSON cannot carry: the body is refused
}
"""Bodies a JSON decoder accepts but JSON cannot carry back, and the field named when one
is sent to the cache clearing (which knows none of these fields but its own two)."""


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, module_db_url: str
) -> Iterator[tuple[str, Path]]:
    """A ``recon api`` process (no token) on a database of each backend, and the folder
    of its log."""
    folder = tmp_path_factory.mktemp("errors")
    with recon_api(folder, db=module_db_url) as (url, _):
        yield url, folder


@pytest.fixture
def api(served: tuple[str, Path]) -> str:
    return served[0]


def local_address(response: httpx.Response) -> Any:
    """The client side of the connection that carried ``response``."""
    return response.extensions["network_stream"].get_extra_info("client_addr")


@pytest.mark.parametrize("body", list(BAD_BODIES))
def test_bad_json_values_get_4xx_and_the_connection_stays_usable(api: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=api, timeout=30) as client:
        for path in POSTS + NO_BODY_POSTS:
            refused = client.post(path, content=body, headers=headers)
            assert 400 <= refused.status_code < 500, (path, refused.text)
            answer = refused.json()  # valid JSON, whatever the input held
            assert answer["field"] and answer["error"]
            if path in POSTS:
                assert refused.status_code == 422
            after = client.get("/healthz")  # the same connection, not a reset one
            assert after.json()["status"] == "ok"
            assert local_address(after) == local_address(refused)


def reject_constant(name: str) -> None:
    raise AssertionError(f"{name} in an answer: not JSON")


def test_the_offending_field_is_named_and_its_value_echoed_safely(api: str) -> None:
    with httpx.Client(base_url=api, timeout=30) as client:
        for body, field in BAD_BODIES.items():
            response = client.post(
                f"{PERF}/cache/clear", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422, response.text
            # Strict JSON: UTF-8 without lone surrogates, no NaN or Infinity literals.
            answer = json.loads(response.content.decode("utf-8"), parse_constant=reject_constant)
            assert answer["field"] == field
            assert answer["error"].startswith(f"{field}: ")
            assert answer["detail"][0]["loc"][-1] == field


def test_safe_leaves_ordinary_json_alone() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "é"}}
    assert safe(value) == value


def test_safe_replaces_what_json_cannot_carry() -> None:
    found = safe({"\udcff": [math.nan, math.inf, -math.inf, ("t", "\ud800x")]})
    assert found == {"\\udcff": ["NaN", "Infinity", "-Infinity", ["t", "\\ud800x"]]}


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, database=None)
@given(json_values)
def test_safe_output_always_encodes(value: Any) -> None:
    text = json.dumps(safe(value), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # strict UTF-8: no lone surrogates left


def test_bad_input_leaves_no_traceback_in_the_log(served: tuple[str, Path]) -> None:
    url, folder = served
    with httpx.Client(base_url=url, timeout=30) as client:
        for body in BAD_BODIES:
            refused = client.post(JOBS, content=body, headers={"Content-Type": "application/json"})
            assert refused.status_code == 422
    assert "Traceback" not in (folder / "api.log").read_text()
