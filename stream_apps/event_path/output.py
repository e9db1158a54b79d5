"""The output producer: idempotent, acks=all; a batch is confirmed or raises.

The consumer loop commits its input only after :meth:`OutputProducer.send` returned in the
processing child, i.e. after every graph, hold, dead-letter and changelog record of the batch
was acknowledged by the broker.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message, Producer

from lineage.kafka import ACKED_PRODUCER, client_config, produce_and_wait
from lineage.settings import Settings
from stream_apps.event_path.batch import OutRecord

OUTPUT_PRODUCER = {
    **ACKED_PRODUCER,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
}


class OutputProducer:
    """One per processing child (never module-global); used from one thread at a time."""

    def __init__(self, settings: Settings, client_id: str = "lineage-worker", **overrides: Any) -> None:
        self._producer = Producer(client_config(settings.kafka_common(), {**OUTPUT_PRODUCER, "client.id": client_id}, overrides))

    def send(self, records: Sequence[OutRecord], timeout: float = 60.0, track_topic: str | None = None) -> list[tuple[str, str, int, int]]:
        """Produce and wait for every delivery; returns (key, topic, partition, offset) of ``track_topic`` records.

        Raises :class:`~lineage.exceptions.DeliveryError` if any record is not confirmed.
        """
        positions: list[tuple[str, str, int, int]] = []

        def track(msg: Message) -> None:
            key, topic = msg.key(), msg.topic()
            if topic == track_topic and topic is not None and key is not None:
                positions.append((bytes(key).decode(), topic, int(msg.partition() or 0), int(msg.offset() or 0)))

        produce_and_wait(
            self._producer,
            ((r.topic, r.key, r.value, r.headers, r.timestamp_ms) for r in records),
            timeout,
            track if track_topic is not None else None,
        )
        return positions

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
