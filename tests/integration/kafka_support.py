"""Plain Kafka clients for tests (no tests here): create a topic, produce and wait for the acks,
read messages back; by bootstrap address, or by a test's Settings."""
from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import wait_until
from lineage.settings import Settings


def create_topic(bootstrap: str, topic: str, partitions: int = 1, replication: int = 1,
                 config: dict[str, str] | None = None) -> None:
    """Create ``topic`` and wait until the cluster's metadata lists it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, partitions, replication, config=config or {})])[topic]
    fut.result(timeout=30)
    wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 30, f"topic {topic} in metadata")


def produce_values(bootstrap: str, topic: str, values: list[bytes], **conf: object) -> None:
    """Produce ``values`` (idempotent, acks=all) and fail unless every one was acknowledged."""
    errors: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **conf})
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert errors == []


def consume_values(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
    """The values of the first ``count`` messages of ``topic`` (a fresh group, from the beginning)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[bytes] = []

    def enough() -> bool:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
        return len(got) >= count

    try:
        wait_until(enough, timeout, f"{count} message(s) on {topic}", interval=0)
    finally:
        consumer.close()
    return got


def consume(settings: Settings, topics: list[str], n: int, timeout: float = 60.0) -> list[Message]:
    """Read ``n`` messages from ``topics`` (from the beginning) or fail after ``timeout``."""
    c = Consumer({**settings.kafka_common(), "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(topics)
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    out.append(m)
    finally:
        c.close()
    assert len(out) >= n, f"only {len(out)} of {n} messages arrived within {timeout}s"
    return out
