"""Errors raised by the sinks and the query layer; all derive from :class:`LineageError`."""
from __future__ import annotations

from lineage.exceptions import LineageError


class SinkError(LineageError):
    """A sink could not be built or used."""


class SinkBackpressureError(SinkError):
    """The backend refused a batch for now (down, overloaded); retry the same batch later.

    The batch is kept by the caller and nothing is committed to Kafka until it lands.
    """

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class StoreLockedError(SinkError):
    """The embedded chDB directory is owned by another process (the running sink)."""


class QueryError(SinkError):
    """A query failed, named an unknown query, or got bad parameters."""


class QueryRefused(QueryError):
    """The SQL sandbox refused a statement (the message says why, in one line)."""


class MigrationError(SinkError):
    """A schema migration failed or the migration history is inconsistent."""


class AccessError(SinkError):
    """An API key operation was refused (unknown or duplicate name, bad role or expiry)."""


class AuditError(SinkError):
    """The audit record was not acknowledged by Kafka, so the operation was refused."""
