"""`lineage sink --no-api` still runs the queue-depth monitor: a consumer group whose lag passes the
threshold fires the lag alert (webhook and alerts topic), and catching up resolves it."""
from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import free_port, make_topics, wait_until
from integration.alerts_support import WebhookReceiver, once_each, topic_alerts
from lineage.kafka import ACKED_PRODUCER, client_config
from lineage.settings import TopicSettings
from shell.processes import sink_process
from stream_apps.alerts.config import AlertSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THRESHOLD = 100
BACKLOG = 300


def _commit(settings, group: str, topic: str, offset_of) -> None:
    """Commit `offset_of(partition)` for every partition of `topic` as consumer group `group`."""
    c = Consumer(client_config(settings.kafka_common(), {"group.id": group, "enable.auto.commit": False}))
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        c.commit(offsets=[TopicPartition(topic, p, offset_of(c, p)) for p in parts], asynchronous=False)
    finally:
        c.close()


def _high(c: Consumer, topic: str, p: int) -> int:
    return c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]


def test_lag_alert_fires_and_resolves_without_the_api(stack, tmp_path: Path) -> None:
    hook = WebhookReceiver()
    tag = uuid.uuid4().hex[:8]
    settings = stack.settings(
        data_dir=tmp_path, app_id=f"test-{tag}", api_port=free_port(),
        topics=TopicSettings(prefix=f"t{tag}", openlineage=f"t{tag}.openlineage.events"),
        alerts=AlertSettings(webhook_url=hook.url, lag_threshold=THRESHOLD, lag_window_s=2, sample_interval_s=0.5,
                             cooldown_s=300, dlq_rate_threshold=1e9, spool_threshold=10**9),
    )
    make_topics(settings)
    topic, group = settings.topics.inference, f"lagging-{tag}"
    _commit(settings, group, topic, lambda c, p: 0)
    sink = sink_process(settings, api=False)
    sink.start()
    try:
        producer = Producer(client_config(settings.kafka_common(), ACKED_PRODUCER))
        for _ in range(BACKLOG):  # a lag of BACKLOG on partition 0 only
            producer.produce(topic, b"x", partition=0)
        assert producer.flush(30) == 0

        def ours(status: str) -> list[dict]:
            return [a for a in hook.alerts("ConsumerLagHigh")
                    if a["status"] == status and a["labels"].get("group") == group]

        (firing,) = wait_until(lambda: ours("firing"), 90, f"the lag alert\n{sink.tail(60)}", 0.5)
        assert firing["labels"]["topic"] == topic and firing["labels"]["partition"] == "0"
        with socket.socket() as probe:  # --no-api: nothing listens on the API port
            assert probe.connect_ex((settings.api_host, settings.api_port)) != 0

        _commit(settings, group, topic, lambda c, p: _high(c, topic, p))  # caught up
        wait_until(lambda: ours("resolved"), 90, f"the lag alert to resolve\n{sink.tail(60)}", 0.5)
        fp = firing["fingerprint"]
        assert once_each(topic_alerts(settings), "alert_name", {"ConsumerLagHigh"})[fp] == ["firing", "resolved"]
    finally:
        sink.stop(timeout=30)
        hook.close()
