"""Alerts: events stored in the database and posted to a webhook.

- ``rules``: when an alert fires (late revisions, missed watcher ticks, the
  performance thresholds): small pure functions.
- ``perf``: ``PerfWatch``, the performance alerts once per occurrence.
- ``delivery``: ``Transport`` (``HttpxTransport``), ``Backoff``, ``Deliverer``.
- ``notifier``: ``Notifier``, where events are recorded and the thread that delivers them.

The events themselves and their SQL: :mod:`engine.store.events`. The console builds
its notifier in :mod:`engine.app.alerts`.
"""
