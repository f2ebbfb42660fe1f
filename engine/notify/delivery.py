"""Webhook delivery: stored events POSTed as JSON, retried with exponential backoff.

Delivery is at least once: an event is marked delivered after the receiver
answered 2xx, so a crash between the two posts it again. Receivers can drop
repeats by the event's ``id`` or ``key``. The body of each POST::

    {"id": 7, "key": "job-failed:12", "kind": "job-failed", "month": "2025-06",
     "district": "42", "job_id": 12, "created_at": "2025-07-03T10:00:00+00:00",
     "attempt": 1, "payload": {"error": "..."}}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from engine.clock import Clock
from engine.errors import DeliveryError
from engine.store.events import Event, EventStore

__all__ = ["Backoff", "Deliverer", "HttpxTransport", "PassResult", "Transport", "event_body"]

log = logging.getLogger(__name__)


class Transport(Protocol):
    """Posts one JSON body (tests may pass their own; the default is :class:`HttpxTransport`)."""

    def post(self, url: str, body: Mapping[str, Any], timeout_s: float) -> None:
        """POST ``body`` as JSON; raise :class:`DeliveryError` unless the answer is 2xx."""
        ...

    def close(self) -> None: ...


class HttpxTransport:
    """:class:`Transport` over one ``httpx.Client`` (connections are reused)."""

    def __init__(self) -> None:
        self._client = httpx.Client(follow_redirects=False)

    def post(self, url: str, body: Mapping[str, Any], timeout_s: float) -> None:
        where = _origin(url)  # webhook paths are often secrets: errors name the origin only
        try:
            answer = self._client.post(url, json=dict(body), timeout=timeout_s)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DeliveryError(where, f"{type(exc).__name__}: {exc}") from exc
        if not answer.is_success:
            raise DeliveryError(
                where, f"answered HTTP {answer.status_code}", status=answer.status_code
            )

    def close(self) -> None:
        self._client.close()


def _origin(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "(invalid URL)"
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """The wait before retry N (N = deliveries tried so far): ``first_s * 2**(N-1)``,
    at most ``max_s``."""

    first_s: float
    max_s: float

    def delay(self, attempts: int) -> timedelta:
        exponent = min(max(attempts - 1, 0), 40)  # 2**40 s is past any maximum
        return timedelta(seconds=min(self.first_s * 2**exponent, self.max_s))


@dataclass(frozen=True)
class PassResult:
    """What one delivery pass did."""

    delivered: int
    failed: int
    next_retry: datetime | None
    """The earliest retry this pass scheduled."""


def event_body(event: Event) -> dict[str, Any]:
    """The JSON body posted for ``event`` (its next attempt's number included)."""
    return {
        "id": event.id,
        "key": event.key,
        "kind": event.kind.value,
        "month": event.month,
        "district": event.district,
        "job_id": event.job_id,
        "created_at": event.created_at.isoformat(),
        "attempt": event.attempts + 1,
        "payload": event.payload,
    }


class Deliverer:
    """Posts the due events of a store to one webhook, one event at a time.

    Args:
        store: the events and their delivery state.
        transport: how a body is posted.
        url: the webhook.
        clock: decides what is due and stamps deliveries.
        timeout_s: one attempt at most.
        backoff: the wait before each retry.
    """

    def __init__(
        self,
        *,
        store: EventStore,
        transport: Transport,
        url: str,
        clock: Clock,
        timeout_s: float,
        backoff: Backoff,
    ) -> None:
        self._store = store
        self._transport = transport
        self._url = url
        self._clock = clock
        self._timeout_s = timeout_s
        self._backoff = backoff

    def deliver_due(
        self,
        *,
        stop_at_failure: bool = False,
        stopping: Callable[[], bool] = lambda: False,
        limit: int = 1000,
    ) -> PassResult:
        """Post every event due now, oldest first, until ``stopping()``.

        ``stop_at_failure`` ends the pass at the first failure (a closing process
        does not wait on a dead webhook).
        """
        delivered = failed = 0
        retries: list[datetime] = []
        for _ in range(limit):
            if stopping():
                break
            now = self._clock.now()
            # Held for this process while it posts: another process does not post it too.
            claimed = self._store.claim(now, now + self._lease(), limit=1)
            if not claimed:
                break
            retry = self._deliver(claimed[0])
            if retry is None:
                delivered += 1
                continue
            failed += 1
            retries.append(retry)
            if stop_at_failure:
                break
        return PassResult(delivered, failed, min(retries, default=None))

    def _deliver(self, event: Event) -> datetime | None:
        """Post one event; None when delivered, else when to retry."""
        try:
            self._transport.post(self._url, event_body(event), self._timeout_s)
        except DeliveryError as exc:
            retry = self._clock.now() + self._backoff.delay(event.attempts + 1)
            self._store.failed(event.id, str(exc), retry)
            log.warning(
                "event %s not delivered (attempt %d): %s", event.key, event.attempts + 1, exc
            )
            return retry
        self._store.delivered(event.id, self._clock.now())
        return None

    def _lease(self) -> timedelta:
        return timedelta(seconds=2 * self._timeout_s + 30)
