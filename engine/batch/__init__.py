"""The batch runner: priorities, concurrency limit, retries with backoff, timeouts, throttling.

- :mod:`.runner` — :class:`~engine.batch.runner.BatchRunner`, the threads and the public API;
- :mod:`.scheduler` — the state machine it drives (order, limits, retry schedule,
  throttling, deadlines, writes due), pure and tested without threads;
- :mod:`.policy` — which errors are retried and how long to wait; :mod:`.memory` — the
  memory gate; :mod:`.config` — a batch's settings, clamped;
- :mod:`.worker` — the worker loop; :mod:`.writer` — writing results; :mod:`.history` —
  stored batches with live state; :mod:`.events` — listeners;
- :mod:`.records` — what comes out (``BatchInfo``, ``BatchProgress``, ``ItemRecord``...).

Everything is recorded through :class:`engine.store.batches.BatchStore`.
"""
