"""Reads the stream's progress from the broker for the watermark gate (:mod:`.watermarks`).

Blocking (librdkafka admin calls): call :meth:`ProgressReader.read` in a thread from asyncio code.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from stream_apps.alerts.watermarks import TP, Committed, Progress, decode_watermark


class ProgressReader:
    """High watermarks of the inference topic and of the window feed, and the commits of the event
    path's group and the Faust app's group on them."""

    def __init__(self, kafka_conf: Mapping[str, Any], inference: str, feed: str, partitions: int,
                 events_group: str, app_group: str, timeout: float = 5.0) -> None:
        self.admin = AdminClient(dict(kafka_conf))
        self.inference, self.feed = inference, feed
        self.partitions = partitions
        self.events_group, self.app_group = events_group, app_group
        self.timeout = timeout

    def read(self, mine: Collection[int]) -> Progress:
        """One reading; ``mine``: the feed partitions this worker owns. Raises KafkaException."""
        wanted = [(self.inference, p) for p in range(self.partitions)] + [(self.feed, p) for p in sorted(mine)]
        highs = self._highs(wanted)  # first: a commit read later is never ahead of its high watermark
        inputs = {tp: h for tp, h in highs.items() if tp[0] == self.inference}
        feed = {tp: h for tp, h in highs.items() if tp[0] == self.feed}
        return Progress(
            inputs=inputs,
            input_commits=self._commits(self.events_group, list(inputs)),
            feed=feed,
            app_commits=self._commits(self.app_group, list(feed)),
        )

    def _highs(self, wanted: list[TP]) -> dict[TP, int]:
        specs = {TopicPartition(t, p): OffsetSpec.latest() for t, p in wanted}
        out = {}
        for tp, fut in self.admin.list_offsets(specs, request_timeout=self.timeout).items():
            out[(tp.topic, tp.partition)] = int(fut.result().offset)
        return out

    def _commits(self, group: str, tps: list[TP]) -> dict[TP, Committed]:
        if not tps:
            return {}
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])
        res = self.admin.list_consumer_group_offsets([req], request_timeout=self.timeout)[group].result()
        out = {}
        for tp in res.topic_partitions or []:
            if tp.error is not None:
                raise KafkaException(tp.error)
            if tp.offset >= 0:
                out[(tp.topic, tp.partition)] = Committed(int(tp.offset), decode_watermark(tp.metadata))
        return out
