"""Cancel tokens: checked, waited on from real threads, and the shared NEVER token."""

from __future__ import annotations

import threading
import time

import pytest

from engine.cancel import NEVER, CancelToken
from engine.errors import BatchError, ItemCancelled, ItemTimeout


def test_check_raises_the_reason_given_to_cancel() -> None:
    token = CancelToken()
    token.check()
    token.cancel("timed out after 5 ms", timeout=True)
    assert token.cancelled
    with pytest.raises(ItemTimeout, match="timed out after 5 ms"):
        token.check()


def test_wait_after_cancel_raises_at_once() -> None:
    token = CancelToken()
    token.cancel("stop")
    started = time.monotonic()
    with pytest.raises(ItemCancelled, match="stop"):
        token.wait(30)
    assert time.monotonic() - started < 5


def test_cancel_from_another_thread_wakes_a_waiter() -> None:
    token = CancelToken()
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            token.wait(30)
        except ItemCancelled as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    while token._event is None:  # the waiter is about to wait (its event exists)
        time.sleep(0.001)
    token.cancel("user")
    waiter.join(10)
    assert not waiter.is_alive() and [str(e) for e in raised] == ["user"]


def test_wait_without_cancel_returns_after_the_time() -> None:
    token = CancelToken()
    token.wait(0.01)  # no error
    assert not token.cancelled


def test_progress_counts_steps_except_on_the_shared_never_token() -> None:
    token = CancelToken()
    token.progress()
    token.progress()
    NEVER.progress()
    assert (token.steps, NEVER.steps) == (2, 0)
    with pytest.raises(BatchError, match="cannot be cancelled"):
        NEVER.cancel()
    NEVER.check()
