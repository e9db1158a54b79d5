"""Pure KRaft configuration: node layout and ``server.properties`` for a local cluster.

Every node is a combined broker + controller on loopback. Node ``i`` (1-based) listens on
``kafka_port + 2*(i-1)`` (clients) and ``kafka_controller_port + 2*(i-1)`` (controller
quorum), so the defaults 19092/19093 give 19092/19093, 19094/19095, 19096/19097.
"""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

from lineage.exceptions import StackError
from lineage.settings import StackSettings

HOST = "127.0.0.1"
PORT_STRIDE = 2


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker + controller) of the local cluster."""

    node_id: int
    port: int
    controller_port: int
    home: Path  # <data_dir>/kafka/node-<id>

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def name(self) -> str:
        """Process name: pid file ``run/kafka-<id>.pid``, log ``logs/kafka-<id>.log``."""
        return f"kafka-{self.node_id}"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.home / "data"


def node_layout(stack: StackSettings, brokers: int, kafka_dir: Path) -> list[KafkaNode]:
    """The nodes of a `brokers`-node cluster rooted at `kafka_dir`; ports must not collide."""
    if not 1 <= brokers <= 5:
        raise StackError(f"brokers must be between 1 and 5, got {brokers}")
    nodes = [
        KafkaNode(
            node_id=i,
            port=stack.kafka_port + PORT_STRIDE * (i - 1),
            controller_port=stack.kafka_controller_port + PORT_STRIDE * (i - 1),
            home=kafka_dir / f"node-{i}",
        )
        for i in range(1, brokers + 1)
    ]
    ports = [p for n in nodes for p in (n.port, n.controller_port)]
    if len(set(ports)) != len(ports):
        raise StackError(
            f"kafka ports collide for {brokers} broker(s): client ports step by {PORT_STRIDE} from "
            f"{stack.kafka_port}, controller ports from {stack.kafka_controller_port}; "
            "choose a controller port that differs from every client port"
        )
    return nodes


def bootstrap(nodes: list[KafkaNode]) -> str:
    return ",".join(n.address for n in nodes)


def server_properties(node: KafkaNode, nodes: list[KafkaNode], admin_password: str | None = None) -> dict[str, str]:
    """``server.properties`` for `node` in the cluster `nodes` (combined broker + controller).

    With ``admin_password`` the cluster is secured: see :func:`secure_properties`.
    """
    n = len(nodes)
    replication = str(min(n, 3))
    min_isr = "2" if n >= 3 else "1"
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(f"{m.node_id}@{HOST}:{m.controller_port}" for m in nodes),
        "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.log_dir),
        "num.partitions": "1",
        "default.replication.factor": replication,
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
        "num.network.threads": "3",
        "num.io.threads": "4",
        **(secure_properties(node, admin_password) if admin_password is not None else {}),
    }


#: The SASL mechanism of the client (and inter-broker) listener of a secured cluster.
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: The broker/admin principal: the only super user.
ADMIN_USER = "admin"


def secure_properties(node: KafkaNode, admin_password: str) -> dict[str, str]:
    """SASL on every listener and ACLs enforced (the settings that replace the plaintext ones).

    Clients and brokers authenticate with SCRAM-SHA-512 (credentials in the cluster metadata, the
    admin's added when the storage is formatted); the controller listener uses PLAIN with the
    admin's password from this file (KRaft controllers cannot use SCRAM). The StandardAuthorizer
    refuses whatever no ACL allows; ``User:admin`` is the only super user.
    """
    scram = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
             f'username="{ADMIN_USER}" password="{admin_password}";')
    plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
             f'username="{ADMIN_USER}" password="{admin_password}" user_{ADMIN_USER}="{admin_password}";')
    return {
        "listeners": f"SASL_PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://{HOST}:{node.port}",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": scram,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_format_argument(admin_password: str) -> str:
    """``kafka-storage format --add-scram`` value that creates the admin's SCRAM credential."""
    return f"{SCRAM_MECHANISM}=[name={ADMIN_USER},password={admin_password}]"


def render_properties(props: dict[str, str]) -> str:
    """Java properties text (values here never need escaping beyond backslashes)."""
    lines = ["# Generated by `lineage stack`; edits are overwritten on every start."]
    lines += [f"{k}={v.replace(chr(92), chr(92) * 2)}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (like `random-uuid`)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid
