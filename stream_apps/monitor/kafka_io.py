"""Small asyncio wrappers over confluent-kafka for the monitor: acknowledged sends, a tail reader."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from lineage.kafka import ACKED_PRODUCER, client_config, produce_and_wait


class AckedProducer:
    """`await send(topic, key, value)` returns once the broker acknowledged the record, else raises."""

    def __init__(self, kafka_conf: dict[str, Any]) -> None:
        self.producer = Producer(client_config(kafka_conf, ACKED_PRODUCER))

    def _send_sync(self, items: list[tuple[str, bytes | None, bytes]], timeout: float) -> None:
        produce_and_wait(self.producer, ((topic, key, value, None, 0) for topic, key, value in items), timeout)

    async def send_many(self, items: list[tuple[str, bytes | None, bytes]], timeout: float = 15.0) -> None:
        if items:
            await asyncio.to_thread(self._send_sync, items, timeout)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.send_many([(topic, key, value)])


class TailReader:
    """Reads a topic from its end without committing anything (not a consumer group member that lags)."""

    def __init__(self, kafka_conf: dict[str, Any], topic: str, group_prefix: str) -> None:
        self.consumer = Consumer(
            client_config(kafka_conf, {
                "group.id": f"{group_prefix}-tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "latest",
            })
        )
        # Pin every partition at its current end now, rather than subscribing: a group join
        # completes seconds later and "latest" would then skip what was produced meanwhile.
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([
            TopicPartition(topic, p, self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in sorted(partitions)
        ])

    def _poll_sync(self, max_messages: int) -> list[bytes]:
        out: list[bytes] = []
        for msg in self.consumer.consume(num_messages=max_messages, timeout=0.2):
            value = msg.value()
            if msg.error() is None and value is not None:
                out.append(value)
        return out

    async def poll(self, max_messages: int = 5000) -> list[bytes]:
        return await asyncio.to_thread(self._poll_sync, max_messages)

    def close(self) -> None:
        self.consumer.close()
