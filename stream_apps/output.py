"""Output producer: confluent-kafka (librdkafka), idempotent, acks=all; a batch is confirmed or raises.

The event path commits its input only after :meth:`OutputProducer.send` returned, i.e. after every
graph, hold and dead-letter record of the batch was acknowledged by the broker.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from stream_apps.exceptions import DeliveryError
from stream_apps.pipeline import OutRecord


class OutputProducer:
    """One per worker process (never module-global); used from one thread at a time."""

    def __init__(self, settings: Any, client_id: str = "lineage-worker", **overrides: Any) -> None:
        conf = {
            **settings.kafka_common(),
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            **overrides,
        }
        self._producer = Producer(conf)
        self._errors: list[str] = []
        self._positions: list[tuple[str, str, int, int]] = []
        self._track: str | None = None

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")
        elif self._track is not None and msg.topic() == self._track:
            key = msg.key()
            if key is not None:
                self._positions.append((bytes(key).decode(), self._track, int(msg.partition() or 0), int(msg.offset() or 0)))

    def send(self, records: Sequence[OutRecord], timeout: float = 60.0, track_topic: str | None = None) -> list[tuple[str, str, int, int]]:
        """Produce and wait for every delivery; returns (key, topic, partition, offset) of ``track_topic`` records."""
        self._errors, self._positions, self._track = [], [], track_topic
        produce, poll = self._producer.produce, self._producer.poll
        for rec in records:
            while True:
                try:
                    produce(rec.topic, rec.value, rec.key, headers=rec.headers, on_delivery=self._on_delivery)  # type: ignore[arg-type]
                    break
                except BufferError:  # local queue full: serve callbacks, then retry
                    poll(0.05)
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} output records not confirmed within {timeout:.0f}s")
        if self._errors:
            raise DeliveryError(f"{len(self._errors)} output records failed: {self._errors[0]}")
        return list(self._positions)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
