"""A broker down in a 3-node cluster of the test's own (ports 29192/29193, not the session stack):
the cluster reports itself degraded, acks=all produce with min.insync.replicas=2 still succeeds,
and the node rejoins every ISR when it is back, with nothing lost."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from helpers import wait_until
from integration.kafka_support import consume_values, create_topic, produce_values
from lineage.settings import Settings, StackSettings
from shell.stack import Stack, describe

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.slow]


def test_three_broker_cluster_survives_one_broker_down(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "cluster", kafka_bootstrap="127.0.0.1:29192", redis_url="redis://127.0.0.1:26369/0",
        stack=StackSettings(kafka_port=29192, kafka_controller_port=29193, kafka_brokers=3, kafka_heap="384m"),
    )
    stack = Stack(settings, brokers=3)
    try:
        stack.install()
        stack.kafka.start(timeout=180)
        bootstrap = stack.kafka.bootstrap
        info = describe(bootstrap)
        assert info.broker_ids == [1, 2, 3] and info.cluster_id == stack.kafka.cluster_id
        topic = f"t{uuid.uuid4().hex[:8]}.replicated"
        create_topic(bootstrap, topic, partitions=3, replication=3, config={"min.insync.replicas": "2"})
        admin = AdminClient({"bootstrap.servers": bootstrap})
        md = admin.list_topics(topic, timeout=10).topics[topic]
        assert all(len(p.replicas) == 3 for p in md.partitions.values())

        assert stack.kafka.stop_node(3)
        assert stack.kafka.running_nodes() == [1, 2]
        assert stack.status()["kafka"]["status"] == "degraded"
        produce_values(bootstrap, topic, [f"while-down-{i}".encode() for i in range(30)])

        stack.kafka.start_node(3, timeout=180)

        def fully_replicated() -> bool:
            parts = admin.list_topics(topic, timeout=5).topics[topic].partitions.values()
            return all(sorted(p.isrs) == [1, 2, 3] for p in parts)

        wait_until(fully_replicated, 90, "node 3 back in every ISR")
        assert len(consume_values(bootstrap, topic, 30)) == 30
        del admin  # no client left reconnecting to the stopped cluster
    finally:
        stopped = stack.down()
    assert sorted(stopped) == ["kafka-1", "kafka-2", "kafka-3"]
    assert stack.kafka.running_nodes() == []
