"""The performance monitor: timings, percentiles, resources, bottlenecks, recommendations.

- :mod:`~engine.monitor.recorder`: the hot path, the :class:`~engine.instrument.Instrument`
  every engine part times itself with;
- :mod:`~engine.monitor.stats`: calls and persisted intervals turned into figures;
- :mod:`~engine.monitor.sampler`: process resources and engine gauges, background thread;
- :mod:`~engine.monitor.history`: figures persisted through a
  :class:`~engine.store.perf.PerfStore` and read back;
- :mod:`~engine.monitor.advice`: bottleneck rules and recommendations;
- :mod:`~engine.monitor.report`: what the monitor reports (``Report``, ``Resources``);
- :mod:`~engine.monitor.core`: :class:`~engine.monitor.core.Monitor`, the facade over them.
"""
