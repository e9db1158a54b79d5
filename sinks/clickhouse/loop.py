"""Kafka -> ClickHouse: consume big batches, insert, and only then commit the offsets.

Backpressure: when ClickHouse refuses a batch the consumer pauses its partitions, keeps the
batch (and anything already fetched) in memory, and retries with capped exponential backoff;
nothing is committed meanwhile, so even a crash during the outage loses nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from lineage.kafka import client_config
from sinks.base import BatchResult, Message, Sink
from sinks.clickhouse.metrics import SinkMetrics
from sinks.exceptions import SinkBackpressureError, SinkError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopConfig:
    batch_max: int = 50_000  # messages per insert
    linger_s: float = 0.5  # flush a partial batch after this long
    fetch_max: int = 10_000  # messages per consume() call
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    shutdown_retry_s: float = 30.0  # on shutdown, keep retrying a failing flush this long


def consumer_config(kafka_common: Mapping[str, Any], group_id: str, instance_id: str | None = None) -> dict[str, Any]:
    """Consumer settings; a static `instance_id` lets a restarted (or crashed) sink take its
    partitions back at once instead of waiting out the session timeout of its dead self.
    Commits stay manual whatever the deployment's options say (commit after insert)."""
    fixed: dict[str, Any] = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 64 << 20,
        "max.partition.fetch.bytes": 8 << 20,
        "queued.max.messages.kbytes": 256 << 10,
    }
    if instance_id:
        fixed["group.instance.id"] = instance_id
    return client_config(kafka_common, {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000}, fixed)


def _message(msg: Any) -> Message:
    return Message(str(msg.topic()), int(msg.partition()), int(msg.offset()), msg.key(), msg.value() or b"")


class SinkLoop:
    """Runs in its own thread; ``stop`` makes it flush, commit and return."""

    def __init__(
        self,
        consumer_conf: dict[str, object],
        topics: list[str],
        sink: Sink,
        metrics: SinkMetrics,
        config: LoopConfig | None = None,
    ) -> None:
        self.consumer_conf = consumer_conf
        self.topics = topics
        self.sink = sink
        self.metrics = metrics
        self.config = config or LoopConfig()
        self.stop_event = threading.Event()
        self._carry: list[Message] = []
        self._consumer: Consumer | None = None

    def stop(self) -> None:
        self.stop_event.set()

    # -- rebalance ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        try:
            self._flush_once(consumer)
        except SinkBackpressureError as exc:
            # Not committed: the partitions' next owner re-reads them. Nothing is lost.
            log.warning("revoked %d partitions with an unwritten batch (%s); the next owner re-reads it", len(revoked), exc)
        self.sink.discard(revoked)
        self._carry = [m for m in self._carry if (m.topic, m.partition) not in revoked]

    # -- main loop ------------------------------------------------------------------

    def run(self) -> None:
        consumer = Consumer(self.consumer_conf)
        self._consumer = consumer
        consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        cfg = self.config
        first_at: float | None = None
        try:
            while not self.stop_event.is_set():
                self.sink.maintain()
                want = max(1, min(cfg.fetch_max, cfg.batch_max - self.sink.pending))
                msgs = consumer.consume(num_messages=want, timeout=0.2)
                for msg in msgs:
                    self._accept(msg)
                if self.sink.pending and first_at is None:
                    first_at = time.monotonic()
                self.metrics.pending_messages = self.sink.pending
                due = first_at is not None and time.monotonic() - first_at >= cfg.linger_s
                if self.sink.pending >= cfg.batch_max or (self.sink.pending and due):
                    self._flush_with_retry(consumer)
                    first_at = None
            if self.sink.pending:
                self._flush_with_retry(consumer, deadline=time.monotonic() + cfg.shutdown_retry_s)
            self.sink.finish()
        finally:
            consumer.close()
            self._consumer = None

    def _accept(self, msg: object) -> None:
        err = msg.error()  # type: ignore[attr-defined]
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.fatal():
                raise SinkError(f"fatal Kafka error: {err}")
            log.warning("Kafka consumer error: %s", err)
            return
        self.metrics.messages_consumed += 1
        self.sink.add(_message(msg))

    def _flush_once(self, consumer: Consumer) -> BatchResult:
        result = self.sink.flush()
        if result.commit:
            offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(result.commit.items())]
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # Safe: the rows are stored; a replay of these offsets is skipped by the chain heads.
                self.metrics.commit_failures += 1
                log.warning("offset commit failed (rows are stored; a replay is skipped): %s", exc)
        return result

    def _flush_with_retry(self, consumer: Consumer, deadline: float | None = None) -> None:
        backoff = self.config.backoff_initial_s
        paused: list[TopicPartition] = []
        while True:
            try:
                result = self._flush_once(consumer)
                break
            except SinkBackpressureError as exc:
                self.metrics.backpressure = True
                if deadline is not None and time.monotonic() > deadline:
                    raise SinkError(f"giving up at shutdown, {self.sink.pending} messages not written (not committed, will be re-read): {exc}") from None
                log.warning("backpressure: %s; retrying in %.1fs", exc, backoff)
                if not paused:
                    paused = consumer.assignment()
                    consumer.pause(paused)
                self._wait(consumer, backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
        if paused:
            consumer.resume(paused)
        self.metrics.backpressure = False
        self.metrics.last_error = ""
        log.debug("batch written: %s", result.rows)
        for m in self._carry:
            self.sink.add(m)
        self._carry = []
        self.metrics.pending_messages = self.sink.pending

    def _wait(self, consumer: Consumer, seconds: float) -> None:
        """Sleep while serving the consumer (liveness, rebalances); keep anything still delivered."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for msg in consumer.consume(num_messages=1000, timeout=min(0.2, max(0.0, end - time.monotonic()))):
                if msg.error() is None:
                    self.metrics.messages_consumed += 1
                    self._carry.append(_message(msg))
