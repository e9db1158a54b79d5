"""What flows along the event path: consumed messages in, output records and counters out.

:data:`INFRA_ERRORS` separates a failure of the infrastructure (the batch is retried, never
dead-lettered) from a bad message (dead-lettered, the rest of the batch flows on).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
from confluent_kafka import KafkaException

from lineage.exceptions import DeliveryError
from lineage.pii.exceptions import KekError
from lineage.registry import RegistryError
from stream_apps.models import ModelLineage

#: Failures of the infrastructure, not of a message: the batch is retried, never dead-lettered.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    DeliveryError,
    KafkaException,
    OSError,
    KekError,
    RegistryError,
)
Headers = list[tuple[str, bytes | None]]
#: An :class:`InMessage` as the plain tuple that crosses the pipe to the processing child
#: (cheap to pickle): (topic, partition, offset, key, value, headers).
InMessageFields = tuple[str, int, int, "bytes | None", "bytes | None", Headers]


@dataclass(slots=True)
class InMessage:
    """A consumed event-topic message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(slots=True)
class OutRecord:
    """A record the batch produces (graph, hold, dead-letter or table changelog)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    hold_prediction: str | None = None  # set on hold records: index them once delivered
    timestamp_ms: int = 0  # the record's timestamp; 0: the time it is produced


@dataclass
class BatchResult:
    """Everything one batch produces: output records, counters, model-lineage table updates, and
    the facts the completeness windows are fed."""

    records: list[OutRecord] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    table_updates: list[tuple[str, ModelLineage]] = field(default_factory=list)
    #: What the completeness windows read of each graph record (:data:`stream_apps.alerts.feed.Facts`).
    facts: list[Any] = field(default_factory=list)

    def merge(self, other: BatchResult) -> None:
        self.records += other.records
        self.counters.update(other.counters)
        self.table_updates += other.table_updates
        self.facts += other.facts
