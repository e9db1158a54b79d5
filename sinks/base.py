"""Sink plugin base: ``add`` messages, ``flush`` them as one batch, ``close``; picked by URL scheme.

A sink never drops a batch: when the backend is unavailable ``flush`` raises
:class:`~sinks.exceptions.SinkBackpressureError` and keeps the batch so the caller can retry
the same flush later (and must not commit the input offsets meanwhile).
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sinks.exceptions import SinkBackpressureError, SinkError

if TYPE_CHECKING:
    from lineage.settings import Settings

__all__ = ["BatchResult", "Message", "Sink", "SinkBackpressureError", "sink_for_url"]


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed Kafka message, as much as a sink needs of it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one flush wrote: rows per table and the next offset to commit per (topic, partition)."""

    rows: dict[str, int]
    commit: dict[tuple[str, int], int]
    skipped: int = 0


class Sink(ABC):
    """Buffer messages and write them in large batches."""

    @abstractmethod
    def add(self, message: Message) -> None:
        """Buffer one message (cheap; no I/O)."""

    @abstractmethod
    def flush(self) -> BatchResult:
        """Write everything buffered; raise SinkBackpressureError (batch kept) when the backend is down."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend connection (does not flush)."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Messages buffered and not yet written."""

    def discard(self, partitions: set[tuple[str, int]]) -> None:  # noqa: B027 - optional hook
        """Forget buffered messages of revoked partitions (their new owner re-reads them)."""

    def maintain(self) -> None:  # noqa: B027 - optional hook
        """Housekeeping between batches (e.g. retention), called often: the sink decides when it is due."""

    def finish(self) -> None:  # noqa: B027 - optional hook
        """Called once after the last flush of a clean shutdown (e.g. a final checkpoint)."""


#: URL scheme -> "module:factory" building a Sink from settings.
SCHEMES: dict[str, str] = {
    "chdb": "sinks.clickhouse.writer:ClickHouseSink.from_settings",
    "http": "sinks.clickhouse.writer:ClickHouseSink.from_settings",
    "https": "sinks.clickhouse.writer:ClickHouseSink.from_settings",
}


def sink_for_url(url: str, settings: Settings) -> Sink:
    """Build the sink registered for the URL's scheme."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    target = SCHEMES.get(scheme)
    if target is None:
        raise SinkError(f"no sink for URL scheme {scheme or '(none)'!r}; known: {', '.join(SCHEMES)}")
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    sink = obj(settings)  # type: ignore[operator]
    assert isinstance(sink, Sink)
    return sink
