"""The local development stack: Kafka (KRaft, from Maven Central jars), Redis, an optional schema
registry (Apicurio, built from Maven Central), and ClickHouse health.

Typical use::

    from shell.stack import Stack
    stack = Stack(settings)          # layout under settings.data_dir
    stack.up()                       # install what is missing, start, wait until healthy
    Stack(settings, secure=True)     # SASL/SCRAM + ACLs, Redis ACL users (see shell.stack.secrets, shell.stack.acl)
    stack.kafka.stop_node(2)         # fault tests: stop / kill / start one broker
    stack.down()                     # stop everything with a pid file under <data_dir>/run/

:class:`ManagedProcess` runs any other background process the same way (pid file in
``<data_dir>/run/``, log in ``<data_dir>/logs/``), so ``lineage stack down`` stops it too.
"""
from __future__ import annotations

from typing import Any

from lineage.settings import Settings
from sinks.clickhouse.status import clickhouse_status
from shell.stack.install import install_kafka, install_redis, install_registry
from shell.stack.kafka import ClusterInfo, KafkaCluster, describe
from shell.stack.kafka_config import KafkaNode, node_layout, server_properties
from shell.stack.manager import Stack, http_probe, unhealthy
from shell.stack.process import ManagedProcess, managed_processes, stop_all
from shell.stack.redis import RedisServer, ping
from shell.stack.registry import RegistryServer
from shell.stack.secrets import StackSecrets


def install(settings: Settings) -> list[str]:
    """Install Kafka's jars, redis-server and (if enabled) the registry when missing; returns what was installed."""
    return Stack(settings).install()


def up(settings: Settings, brokers: int | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """Start the stack (idempotent) and return its status report."""
    return Stack(settings, brokers).up(timeout)


def down(settings: Settings, timeout: float = 30.0, wipe: bool = False) -> list[str]:
    """Stop every process of the stack under ``settings.data_dir``; returns the names stopped."""
    return Stack(settings).down(timeout, wipe)


def status(settings: Settings) -> dict[str, Any]:
    """Health of each component (the shape of ``lineage stack status --json``)."""
    return Stack(settings).status()


__all__ = [
    "ClusterInfo",
    "KafkaCluster",
    "KafkaNode",
    "ManagedProcess",
    "RedisServer",
    "RegistryServer",
    "Stack",
    "StackSecrets",
    "clickhouse_status",
    "describe",
    "down",
    "http_probe",
    "install",
    "install_kafka",
    "install_redis",
    "install_registry",
    "managed_processes",
    "node_layout",
    "ping",
    "server_properties",
    "status",
    "stop_all",
    "unhealthy",
    "up",
]
