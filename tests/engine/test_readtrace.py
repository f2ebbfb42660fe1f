"""The read trace: a bounded record of a cache's reads, with who made them."""

from __future__ import annotations

import itertools
import threading

from engine.instrument import reads_for
from engine.readtrace import WORK, ReadTrace


def test_reads_carry_their_origin_and_filtering_keeps_every_invalidation() -> None:
    ticks = itertools.count()
    trace = ReadTrace(timer=lambda: float(next(ticks)))
    trace.read("a")
    with reads_for("dashboard"):
        trace.read("b")
        trace.add("i", "a")
    trace.add("c", None)
    assert trace.origins() == {WORK: 1, "dashboard": 1}
    assert trace.events() == [("g", "a", 0.0), ("g", "b", 1.0), ("i", "a", 2.0), ("c", None, 3.0)]
    assert trace.events(WORK) == [("g", "a", 0.0), ("i", "a", 2.0), ("c", None, 3.0)]
    assert trace.events("api") == [("i", "a", 2.0), ("c", None, 3.0)]


def test_the_trace_keeps_only_the_last_events_and_takes_threads_at_once() -> None:
    trace = ReadTrace(maxlen=100)

    def reader(n: int) -> None:
        for i in range(1000):
            trace.read((n, i))

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trace) == 100
    assert trace.origins() == {WORK: 100}
