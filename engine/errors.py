"""The engine's exception tree.

Every error the engine raises on purpose derives from :class:`EngineError`, so
callers (CLI, dashboard, API) can catch one type and show its message::

    EngineError
    ├── ConfigError      a setting or argument is invalid   (field, value)
    │   ├── NotFoundError    no such job, batch or operation
    │   └── ConflictError    refused in the current state (a month already being worked)
    ├── ParseError       an export could not be read        (source, line, column)
    ├── SourceError      a fetch failed                     (district, month, url, transient)
    │   └── GapError         no export for that day: a gap, not a failure
    ├── StorageError     the database refused a read/write  (operation)
    ├── DeliveryError    an alert webhook did not accept an event (url, status)
    └── BatchError       the batch runner refused or gave up (batch_id, item)
        ├── ItemTimeout      an attempt ran past its timeout
        └── ItemCancelled    an attempt was cancelled

``transient`` tells the batch runner whether retrying can help. Errors are
chained with ``raise ... from`` so the original cause stays visible in logs.
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""

    transient: bool = False


class ConfigError(EngineError):
    """A setting, argument or request field is invalid."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r}: {message}")


class NotFoundError(ConfigError):
    """An id names nothing: no such job, batch or operation."""

    def __init__(self, kind: str, value: object, message: str = "") -> None:
        super().__init__(kind, value, message or f"no such {kind}")


class ConflictError(ConfigError):
    """A request that the current state refuses, e.g. a month already being worked."""


class ParseError(EngineError):
    """An export could not be parsed; names the file or URL, line and column."""

    def __init__(
        self, source: str, message: str, *, line: int | None = None, column: str | None = None
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        where = source
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class SourceError(EngineError):
    """Fetching an export failed. ``transient`` errors are worth retrying."""

    def __init__(
        self,
        message: str,
        *,
        district: str | None = None,
        month: str | None = None,
        url: str | None = None,
        transient: bool = False,
    ) -> None:
        self.district = district
        self.month = month
        self.url = url
        self.transient = transient
        parts = [
            p for p in (f"district {district}" if district else "", month or "", url or "") if p
        ]
        super().__init__(f"{' '.join(parts)}: {message}" if parts else message)


class GapError(SourceError):
    """The source has no export for the collection date asked (a collector missed a
    day) but has exports of the month: a gap to record and pass, not a failure.
    Never transient: asking again for that day gives the same answer."""


class StorageError(EngineError):
    """The database refused an operation; nothing acknowledged was lost."""

    def __init__(self, operation: str, message: str, *, transient: bool = False) -> None:
        self.operation = operation
        self.transient = transient
        super().__init__(f"storage {operation}: {message}")


class DeliveryError(EngineError):
    """An alert webhook did not accept an event: unreachable, or not a 2xx answer.

    Always transient: the event stays stored and is retried with backoff."""

    transient = True

    def __init__(self, url: str, message: str, *, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(f"webhook {url}: {message}")


class BatchError(EngineError):
    """The batch runner refused a request or an item gave up."""

    def __init__(self, message: str, *, batch_id: int | None = None, item: str | None = None):
        self.batch_id = batch_id
        self.item = item
        super().__init__(message)


class ItemTimeout(BatchError):
    """An attempt ran past its timeout and was stopped."""

    transient = True


class ItemCancelled(BatchError):
    """An attempt was cancelled cooperatively."""
