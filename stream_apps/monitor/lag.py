"""Consumer lag, topic throughput and dead-letter counts, sampled through the Kafka admin API.

Blocking (librdkafka) calls: run :meth:`LagSampler.sample` in a thread from asyncio code.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from lineage.exceptions import StackError


@dataclass(frozen=True, slots=True)
class LagPoint:
    group: str
    topic: str
    partition: int
    committed: int
    high: int
    lag: int


@dataclass(slots=True)
class Sample:
    ts: float
    lag: list[LagPoint] = field(default_factory=list)
    high: dict[tuple[str, int], int] = field(default_factory=dict)

    def topic_high(self, topic: str) -> int:
        return sum(v for (t, _), v in self.high.items() if t == topic)


class LagSampler:
    """One admin client; `groups` empty means: every group with commits on the pipeline's topics."""

    def __init__(self, kafka_conf: dict[str, Any], topic_prefix: str, groups: tuple[str, ...] = (), timeout: float = 10.0):
        self.admin = AdminClient(dict(kafka_conf))
        self.prefix = topic_prefix + "."
        self.groups = groups
        self.timeout = timeout

    def _topics(self) -> dict[str, int]:
        md = self.admin.list_topics(timeout=self.timeout)
        return {
            name: len(t.partitions)
            for name, t in md.topics.items()
            if name.startswith(self.prefix) and t.error is None
        }

    def _group_ids(self) -> list[str]:
        if self.groups:
            return list(self.groups)
        listing = self.admin.list_consumer_groups(request_timeout=self.timeout).result()
        return sorted(g.group_id for g in listing.valid)

    def _committed(self, group: str) -> list[TopicPartition]:
        futs = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout
        )
        res = futs[group].result()
        return [tp for tp in (res.topic_partitions or []) if tp.topic.startswith(self.prefix) and tp.offset >= 0]

    def sample(self) -> Sample:
        """One snapshot: high watermarks of every pipeline topic and each group's lag on them."""
        try:
            topics = self._topics()
            specs = {TopicPartition(t, p): OffsetSpec.latest() for t, n in topics.items() for p in range(n)}
            high: dict[tuple[str, int], int] = {}
            if specs:
                for tp, fut in self.admin.list_offsets(specs, request_timeout=self.timeout).items():
                    high[(tp.topic, tp.partition)] = int(fut.result().offset)
            points: list[LagPoint] = []
            for group in self._group_ids():
                for tp in self._committed(group):
                    hw = high.get((tp.topic, tp.partition))
                    if hw is None:
                        continue
                    points.append(LagPoint(group, tp.topic, tp.partition, tp.offset, hw, max(0, hw - tp.offset)))
        except KafkaException as exc:
            raise StackError(f"lag sampling failed: {exc}") from None
        return Sample(time.time(), points, high)
