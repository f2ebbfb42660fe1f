"""Retry policy: error classification, outcomes, the retry schedule and its budget."""

from __future__ import annotations

import random

import httpx
import pytest

from engine.batch.policy import (
    INTERRUPTED,
    MAX_RETRY_DELAY_S,
    classify,
    is_transient,
    next_retry,
    retry_delay,
)
from engine.errors import (
    ConfigError,
    ItemCancelled,
    ItemTimeout,
    ParseError,
    SourceError,
    StorageError,
)


def test_retry_delay_is_exponential_capped_with_full_jitter() -> None:
    rng = random.Random(3)
    for retry, ceiling in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (10, 60.0)]:
        delays = [retry_delay(retry, 5.0, rng) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert (
            max(delays) > 0.9 * ceiling and min(delays) < 0.1 * ceiling
        )  # the whole range is used
    assert MAX_RETRY_DELAY_S == 60.0
    assert retry_delay(3, 1.0, random.Random(9)) == random.Random(9).uniform(0, 4.0)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (SourceError("busy", transient=True), True),
        (SourceError("404", transient=False), False),
        (ParseError("x.csv", "bad row"), False),
        (ConfigError("month", "x", "bad"), False),
        (ItemTimeout("slow"), True),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (
            httpx.HTTPStatusError(
                "", request=httpx.Request("GET", "http://x"), response=httpx.Response(503)
            ),
            True,
        ),
        (
            httpx.HTTPStatusError(
                "", request=httpx.Request("GET", "http://x"), response=httpx.Response(429)
            ),
            True,
        ),
        (
            httpx.HTTPStatusError(
                "", request=httpx.Request("GET", "http://x"), response=httpx.Response(404)
            ),
            False,
        ),
        (ValueError("bug"), False),
    ],
)
def test_error_classification(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_outcome_of_a_failed_attempt() -> None:
    busy = SourceError("busy", transient=True)
    assert classify(busy, stop=None, timed_out=False) == "transient"
    assert classify(ValueError("bug"), stop=None, timed_out=False) == "permanent"
    assert classify(ItemCancelled("x"), stop=None, timed_out=False) == "cancelled"
    assert classify(ItemCancelled("x"), stop=None, timed_out=True) == "timeout"
    assert classify(busy, stop="cancelled", timed_out=True) == "cancelled"  # told to stop
    assert classify(busy, stop=INTERRUPTED, timed_out=False) == INTERRUPTED
    refused = StorageError("write", "disk full", transient=False)
    assert classify(refused, stop=None, timed_out=False) == INTERRUPTED  # not the item's fault


def test_next_retry_counts_only_attempts_without_progress() -> None:
    assert next_retry("transient", progressed=False, retries=0, budget=2) == 1
    assert next_retry("timeout", progressed=False, retries=1, budget=2) == 2
    assert next_retry("timeout", progressed=False, retries=2, budget=2) is None
    assert next_retry("timeout", progressed=True, retries=2, budget=2) == 1
    assert next_retry("permanent", progressed=True, retries=0, budget=2) is None
    assert next_retry("transient", progressed=False, retries=0, budget=0) is None
