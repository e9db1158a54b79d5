"""Kafka client helpers shared by every process: one config builder, one acknowledged send.

librdkafka options pass through as a dict under their own names. Precedence, lowest first: the
caller's defaults for its role, then the deployment's common options (``Settings.kafka_common()``:
bootstrap servers plus ``LINEAGE_KAFKA_CONFIG``, e.g. SASL/SSL), then the caller's overrides.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from lineage.exceptions import DeliveryError

#: A producer whose records are confirmed by every in-sync replica, without duplicates on retry.
ACKED_PRODUCER: Mapping[str, Any] = {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
#: A consumer that commits only what its owner says is done.
MANUAL_COMMIT_CONSUMER: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": False,
}

#: (topic, key, value, headers, timestamp in epoch ms) of one record to send; timestamp 0: when it is sent.
Outgoing = tuple[str, "bytes | None", "bytes | None", "list[tuple[str, bytes]] | None", int]


def client_config(
    common: Mapping[str, Any], defaults: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """librdkafka options: ``defaults`` < ``common`` (the deployment's) < ``overrides``."""
    return {**(defaults or {}), **common, **(overrides or {})}


def produce_and_wait(
    producer: Producer,
    records: Iterable[Outgoing],
    timeout: float = 60.0,
    on_delivered: Callable[[Message], None] | None = None,
) -> int:
    """Produce ``records`` and wait until the broker acknowledged every one; returns how many.

    A full local queue is waited out (callbacks served), never an error. Raises
    :class:`DeliveryError` if any record failed or was not confirmed within ``timeout``;
    ``on_delivered`` is called for each acknowledged record (from inside poll/flush).
    """
    errors: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: {err.str()}")
        elif on_delivered is not None:
            on_delivered(msg)

    produce, poll = producer.produce, producer.poll
    sent = 0
    for topic, key, value, headers, timestamp in records:
        while True:
            try:
                produce(topic, value, key, headers=headers, on_delivery=delivered, timestamp=timestamp)  # type: ignore[arg-type]
                break
            except BufferError:  # local queue full: serve callbacks, then retry
                poll(0.05)
        sent += 1
    remaining = producer.flush(timeout)
    if remaining:
        raise DeliveryError(f"{remaining} of {sent} records not confirmed within {timeout:.0f}s")
    if errors:
        raise DeliveryError(f"{len(errors)} of {sent} records failed: {errors[0]}")
    return sent


def read_record(common: Mapping[str, Any], topic: str, partition: int, offset: int, timeout: float = 30.0) -> Message | None:
    """The one record at ``topic``/``partition``/``offset`` (a confluent_kafka Message), or None if it
    is not there (past the end, or removed by retention); raises ``KafkaException`` on a read error."""
    consumer = Consumer(client_config(common, {
        "group.id": f"lineage-read-{uuid.uuid4().hex}", "enable.auto.commit": False, "auto.offset.reset": "error",
        "enable.partition.eof": True}))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        if not low <= offset < high:
            return None
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return None
                raise KafkaException(err)
            return msg if msg.offset() == offset else None
        return None
    finally:
        consumer.close()
