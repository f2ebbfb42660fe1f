"""Schemathesis over the API's own OpenAPI schema: no 5xx, and every answer as documented.

Each operation gets valid and invalid requests generated from the schema. (The
pytest loader ``schemathesis.pytest.from_fixture`` fails under pytest 9, so the
strategies are driven with Hypothesis directly, inside one test.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.api.app import create_app
from engine.app.console import Console
from engine.settings import Settings
from tests.engine.api.test_api import serving
from tests.engine.api.test_errors import reject_constant

TOKEN = "fuzz-token"
EXAMPLES = 10  # per operation and mode: about 300 requests in all
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture(scope="module")
def app(module_db_url: str) -> Iterator[FastAPI]:
    """An app over a console with a little history (on SQLite, then on PostgreSQL). The
    batch runner is not started, so batches the fuzzer starts stay queued and each
    request stays cheap."""
    settings_ = Settings().with_values("storage", db_url=module_db_url)
    console = Console(settings_)
    console.start_batch("2025-06", districts=["1"])
    console.batch.run(until_idle=True)
    console.monitor.sample_now()
    yield create_app(console, token=TOKEN, max_body_bytes=20_000)
    console.close()


@pytest.fixture(scope="module")
def schema(app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(
    schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 19  # every endpoint of the module docstring

    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not (
            any(operation.iter_parameters()) or operation.body
        ):
            continue  # nothing to get wrong: /healthz, /metrics, the cache statistics

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def answers(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

        answers()


# Bodies Python's JSON decoder accepts though JSON cannot carry them back out: NaN,
# Infinity and lone surrogates, anywhere in the body (schemathesis only sends valid JSON).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
POSTS = [
    "/api/reconciliation/performance/cache/clear",
    "/api/reconciliation/performance/batch/process",
    "/api/reconciliation/performance/batch/1/cancel",
    "/api/reconciliation/jobs",
    "/api/reconciliation/jobs/1/cancel",
]


def test_any_decodable_body_gets_a_json_answer_below_500(app: FastAPI) -> None:
    @given(path=st.sampled_from(POSTS), value=json_values)
    @settings(max_examples=150, deadline=None, database=None)
    def answers(path: str, value: object) -> None:
        body = json.dumps(value, allow_nan=True).encode()  # surrogates as \\udcxx escapes
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, response.text
        json.loads(response.content.decode("utf-8"), parse_constant=reject_constant)

    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        answers()
