"""Generated KRaft configuration for the local stack (pure: no JVM, no sockets)."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lineage.exceptions import StackError
from lineage.settings import StackSettings
from shell.stack.kafka_config import (
    bootstrap,
    new_cluster_id,
    node_layout,
    render_properties,
    server_properties,
)

STACK = StackSettings(kafka_port=29092, kafka_controller_port=29093)


def test_single_node_properties(tmp_path: Path) -> None:
    nodes = node_layout(STACK, 1, tmp_path)
    props = server_properties(nodes[0], nodes)
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "node-1" / "data")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "default.replication.factor"):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert bootstrap(nodes) == "127.0.0.1:29092"


def test_three_node_cluster_properties(tmp_path: Path) -> None:
    nodes = node_layout(STACK, 3, tmp_path)
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 29092, 29093), (2, 29094, 29095), (3, 29096, 29097)]
    assert bootstrap(nodes) == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    all_props = [server_properties(n, nodes) for n in nodes]
    voters = "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    for node, props in zip(nodes, all_props):
        assert props["node.id"] == str(node.node_id)
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["default.replication.factor"] == "3"
    assert len({p["log.dirs"] for p in all_props}) == 3


def test_colliding_ports_are_rejected(tmp_path: Path) -> None:
    clash = StackSettings(kafka_port=29092, kafka_controller_port=29094)  # node 2 client port = node 1 controller
    node_layout(clash, 1, tmp_path)
    with pytest.raises(StackError, match="collide"):
        node_layout(clash, 3, tmp_path)
    with pytest.raises(StackError, match="between 1 and 5"):
        node_layout(STACK, 0, tmp_path)


def test_render_properties_round_trips() -> None:
    text = render_properties({"a.b": "1", "path": "C:\\x"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["a.b=1", "path=C:\\\\x"]


def test_cluster_id_has_kafka_uuid_shape() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_unset_addresses_follow_the_stack_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting only the stack's ports moves the pipeline's Kafka and Redis addresses with them; an
    address set explicitly wins; with neither, the defaults stay."""
    from lineage.settings import load_settings

    monkeypatch.setenv("LINEAGE_STACK__KAFKA_PORT", "36092")
    monkeypatch.setenv("LINEAGE_STACK__REDIS_PORT", "36379")
    s = load_settings()
    assert (s.kafka_bootstrap, s.redis_url) == ("127.0.0.1:36092", "redis://127.0.0.1:36379/0")
    monkeypatch.setenv("LINEAGE_KAFKA_BOOTSTRAP", "kafka.internal:9092")
    assert load_settings().kafka_bootstrap == "kafka.internal:9092"
    for name in ("LINEAGE_STACK__KAFKA_PORT", "LINEAGE_STACK__REDIS_PORT", "LINEAGE_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(name)
    s = load_settings()
    assert (s.kafka_bootstrap, s.redis_url) == ("127.0.0.1:19092", "redis://127.0.0.1:16379/0")
