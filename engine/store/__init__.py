"""The store: the schema, every SQL statement, and the storage implementations.

- ``schema``: the tables; ``migrate``: the schema version, checked and migrated on open.
- ``database``: ``Database``, the engine, its transactions and reads.
- ``writes``: the write policies, ``Immediate`` (naive) and ``Deferred`` (optimized).
- ``jobs``: the ``JobStore`` protocol and ``SqlJobStore``; ``cached``: ``CachedJobStore``
  and its ``ReadCache`` (optimized); ``rows``: their row codecs and statements.
- ``changes``: the ``changes`` table, written with every job write; ``ChangeFeed``
  tells a process what other processes committed (freshness across processes).
- ``bench``: ``BenchStore`` (benchmark results); ``bulk``: many-row SQL helpers.
- ``storage``: ``Storage``, the one object the engine's callers hold
  (``engine.app.console.open_storage`` builds it from the settings).
"""
