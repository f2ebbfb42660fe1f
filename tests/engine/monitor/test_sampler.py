from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from engine.clock import FakeClock
from engine.errors import ConfigError
from engine.monitor.core import Figure, Monitor
from engine.monitor.resources import RESOURCE_FIELDS
from engine.monitor.sampler import Sampler
from engine.settings import MonitorSettings
from tests.engine.monitor.support import MakeMonitor, MakeStore, Reader

# --- resources ----------------------------------------------------------------------------


def test_sampler_with_injected_reader_and_gauges(
    monitor: Monitor, reader: Reader, clock: FakeClock
) -> None:
    depth = [2.0]
    monitor.register_gauge("batch_queue_depth", lambda: depth[0])
    monitor.register_gauge("cache_hit_rate", lambda: None)  # no lookups yet
    monitor.register_gauge("storage_pending_writes", lambda: float("nan"))

    def broken() -> float:
        raise RuntimeError("gauge source gone")

    monitor.register_gauge("batch_running", broken)
    reader.values.update(rss_mb=100, cpu_percent=20)
    first = monitor.sample_now()
    assert first.values["rss_mb"] == 100 and first.values["batch_queue_depth"] == 2
    assert set(first.values) == {*RESOURCE_FIELDS, "batch_queue_depth"}
    clock.advance(60)
    reader.values.update(rss_mb=300, cpu_percent=60)
    depth[0] = 4
    monitor.sample_now()
    found = monitor.resources()
    assert found.count == 2 and found.samples[1].at == clock.now()
    assert found.summary["rss_mb"] == Figure(avg=200.0, peak=300.0)
    assert found.summary["cpu_percent"] == Figure(avg=40.0, peak=60.0)
    assert found.summary["batch_queue_depth"] == Figure(avg=3.0, peak=4.0)
    assert monitor.resources(window_s=60).count == 1
    with pytest.raises(ConfigError):
        monitor.register_gauge("rss_mb", lambda: 1.0)


def test_sampler_with_real_psutil(make_monitor: MakeMonitor, tmp_path: Path) -> None:
    monitor = make_monitor(resource_reader=None)
    with open(tmp_path / "held-open.txt", "w") as held:
        held.write("x")
        sum(i * i for i in range(2_000_000))  # some CPU time since the reader started
        values = monitor.sample_now().values
    assert 1 < values["rss_mb"] < 100_000
    assert 0 < values["cpu_percent"]
    assert values["threads"] >= 1 and values["open_files"] >= 1
    assert 0 < values["system_memory_percent"] <= 100
    assert values["disk_read_bytes"] >= 0 and values["disk_write_bytes"] >= 0


def test_background_sampler_starts_and_stops(
    make_monitor: MakeMonitor, reader: Reader, make_store: MakeStore, clock: FakeClock
) -> None:
    settings = MonitorSettings(sample_interval_s=0.1)
    monitor = make_monitor(settings=settings, store=make_store())
    since = clock.now() - timedelta(seconds=1)
    monitor.start()
    assert reader.called.wait(10)
    monitor.close()
    calls = reader.calls
    assert len(monitor.resource_history(since)) == calls  # close() persisted every sample
    assert not any(t.name == "perf-monitor" for t in threading.enumerate())


def test_sampler_alone_queues_samples_for_history_only_when_asked(
    clock: FakeClock, reader: Reader
) -> None:
    kept = Sampler(clock=clock, reader=reader, process="host:1", keep_unsaved=True)
    memory_only = Sampler(clock=clock, reader=reader, process="host:2", keep_unsaved=False)
    first = kept.sample_now()
    memory_only.sample_now()
    assert first.process == "host:1" and first.at == clock.now()
    assert kept.take_unsaved() == [first] and kept.take_unsaved() == []
    assert memory_only.take_unsaved() == []
    clock.advance(10)
    kept.sample_now()
    assert len(kept.window(10)) == 1 and len(kept.window(11)) == 2
    assert not kept.running and not kept.stop()  # never started: nothing to stop
