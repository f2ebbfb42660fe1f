"""Retry policy: which errors are retried, how long to wait, when an item's retries are spent.

An attempt ends with an outcome: an item state (``succeeded``, ``cancelled``) or
one of :data:`TIMEOUT`, :data:`TRANSIENT`, :data:`PERMANENT`, :data:`INTERRUPTED`.
Timeouts and transient errors are retried up to ``retryAttempts`` times, counted
over the attempts that made no progress; the others are final.
"""

from __future__ import annotations

import random

import httpx

from engine.domain.models import ItemState
from engine.errors import ItemCancelled, ItemTimeout, StorageError

# Attempt outcomes besides SUCCEEDED and CANCELLED (plain strings: they are written
# into every attempt's JSON).
SUCCEEDED: str = ItemState.SUCCEEDED.value
CANCELLED: str = ItemState.CANCELLED.value
TIMEOUT, TRANSIENT, PERMANENT = "timeout", "transient", "permanent"
INTERRUPTED = "interrupted"  # stopped by close() or a database fault: runs again after resume
RETRYABLE = frozenset({TIMEOUT, TRANSIENT})

MAX_RETRY_DELAY_S = 60.0


def is_transient(exc: BaseException) -> bool:
    """Whether retrying can help: timeouts, connection errors, HTTP 5xx, 408 and 429.

    Parse errors, configuration errors and other 4xx responses are permanent;
    engine errors say so with their ``transient`` attribute.
    """
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code in (408, 429)  # 408/429 ask the client to come back later
    if isinstance(exc, httpx.TransportError | OSError | TimeoutError):
        return True
    return bool(getattr(exc, "transient", False))


def is_fatal(exc: BaseException) -> bool:
    """The database refuses writes: not the item's fault, and no retry can help."""
    return isinstance(exc, StorageError) and not exc.transient


def classify(exc: Exception, *, stop: str | None, timed_out: bool) -> str:
    """The outcome of an attempt that raised ``exc``.

    Args:
        stop: why the runner told the item to stop (CANCELLED or INTERRUPTED), if it did.
        timed_out: the runner cancelled the attempt at its deadline.
    """
    if is_fatal(exc):
        return INTERRUPTED  # it stays unfinished for a resume
    if stop is not None:
        return stop
    if timed_out or isinstance(exc, ItemTimeout):
        return TIMEOUT
    if isinstance(exc, ItemCancelled):
        return CANCELLED
    return TRANSIENT if is_transient(exc) else PERMANENT


def retry_delay(
    retry: int, base_s: float, rng: random.Random, cap_s: float = MAX_RETRY_DELAY_S
) -> float:
    """Seconds to wait before retry number ``retry`` (1-based).

    Full jitter: uniform between 0 and ``base_s * 2 ** (retry - 1)`` capped at
    ``cap_s``, so that items failing together do not retry together.
    """
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** (retry - 1)))


def next_retry(outcome: str, *, progressed: bool, retries: int, budget: int) -> int | None:
    """The number of the retry that follows an attempt, or None when ``outcome`` is final.

    ``retries`` is how many retries ran since the item last made progress: an
    attempt that made progress starts the budget afresh.
    """
    if outcome not in RETRYABLE:
        return None
    if progressed:
        retries = 0
    return retries + 1 if retries < budget else None


__all__ = [
    "INTERRUPTED",
    "MAX_RETRY_DELAY_S",
    "PERMANENT",
    "RETRYABLE",
    "TIMEOUT",
    "TRANSIENT",
    "classify",
    "is_fatal",
    "is_transient",
    "next_retry",
    "retry_delay",
]
