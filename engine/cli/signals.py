"""Long-running commands (``watch``, ``cluster``) stop cleanly on SIGTERM and Ctrl-C."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.cli.output import err


@contextmanager
def stopped_by_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` (instead of ending the process mid-write)."""

    def handler(signum: int, _frame: object) -> None:
        err.print(f"{signal.Signals(signum).name}: stopping after the current step")
        stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


__all__ = ["stopped_by_signals"]
