"""The local KRaft cluster: format storage once, start/stop nodes, wait for health."""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from lineage.exceptions import StackError
from lineage.settings import StackSettings
import shell.stack.kafka_config as kc
from shell.stack.install import KAFKA_HOME, kafka_installed, kafka_libs, require_java
from shell.stack.process import ManagedProcess
from shell.stack.secrets import StackSecrets, write_private

_quiet = logging.getLogger("lineage.stack.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def port_open(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def admin_client(bootstrap: str, extra: dict[str, Any] | None = None) -> AdminClient:
    """An AdminClient whose connection-refused chatter stays out of the terminal."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _quiet, **(extra or {})}
    return AdminClient(conf)


@dataclass(frozen=True)
class ClusterInfo:
    """What the broker reports about itself."""

    cluster_id: str | None
    broker_ids: list[int]
    controller_id: int | None


def describe(bootstrap: str, timeout: float = 5.0, extra: dict[str, Any] | None = None) -> ClusterInfo:
    """describe_cluster via the AdminClient; raises StackError when nothing answers in time."""
    admin = admin_client(bootstrap, {"socket.connection.setup.timeout.ms": int(timeout * 1000), **(extra or {})})
    try:
        result = admin.describe_cluster(request_timeout=timeout).result(timeout=timeout + 1)
    except (KafkaException, TimeoutError, ValueError, RuntimeError) as exc:
        raise StackError(f"kafka at {bootstrap} did not answer a metadata request: {exc}") from None
    controller = result.controller.id if result.controller is not None else None
    return ClusterInfo(result.cluster_id, sorted(n.id for n in result.nodes), controller)


class KafkaCluster:
    """A 1..5-node KRaft cluster under ``<data_dir>/kafka`` (layout: see :mod:`kafka_config`)."""

    def __init__(self, data_dir: Path, stack: StackSettings, brokers: int | None = None,
                 secrets: StackSecrets | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.stack = stack
        self.secrets = secrets
        self.kafka_dir = self.data_dir / "kafka"
        recorded = self._recorded()
        if recorded and bool(recorded.get("secure")) != (secrets is not None):
            kind = "a secured" if recorded.get("secure") else "an unsecured"
            raise StackError(f"{self.kafka_dir} holds {kind} cluster: run `lineage stack down --wipe` first "
                             "to change between `stack up` and `stack up --secure`")
        self.brokers = brokers or (recorded or {}).get("brokers") or stack.kafka_brokers
        if recorded and brokers and recorded["brokers"] != brokers:
            raise StackError(
                f"{self.kafka_dir} holds a {recorded['brokers']}-broker cluster, not {brokers}: "
                "run `lineage stack down --wipe` first"
            )
        self.nodes = kc.node_layout(stack, self.brokers, self.kafka_dir)

    # -- layout ---------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return kc.bootstrap(self.nodes)

    @property
    def client_config(self) -> dict[str, Any]:
        """librdkafka options the stack's own admin requests need (SASL as the admin when secured)."""
        return self.secrets.kafka_config("admin") if self.secrets is not None else {}

    @property
    def admin_password(self) -> str | None:
        return self.secrets.kafka["admin"] if self.secrets is not None else None

    @property
    def cluster_file(self) -> Path:
        return self.kafka_dir / "cluster.json"

    @staticmethod
    def formatted(data_dir: Path) -> bool:
        """True if a cluster was ever set up under ``data_dir``."""
        return (Path(data_dir).resolve() / "kafka" / "cluster.json").is_file()

    def _recorded(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.kafka_dir / "cluster.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def cluster_id(self) -> str | None:
        """The id the storage was formatted with (None before the first start)."""
        recorded = self._recorded()
        return str(recorded["cluster_id"]) if recorded else None

    def node(self, node_id: int) -> kc.KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise StackError(f"no kafka node {node_id} (nodes are 1..{len(self.nodes)})")

    def process(self, node_id: int) -> ManagedProcess:
        node = self.node(node_id)
        heap = self.stack.kafka_heap
        argv = [
            "java", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_HOME / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp", f"{kafka_libs()}/*", "kafka.Kafka", str(node.config_file),
        ]
        return ManagedProcess.in_data_dir(
            self.data_dir, node.name, argv, cwd=node.home, meta={"component": "kafka", "node_id": node.node_id}
        )

    # -- storage --------------------------------------------------------------------------
    def _write_configs(self) -> None:
        for node in self.nodes:
            node.home.mkdir(parents=True, exist_ok=True)
            text = kc.render_properties(kc.server_properties(node, self.nodes, self.admin_password))
            write_private(node.config_file, text)  # holds the admin's password when secured

    def _ensure_cluster_id(self) -> str:
        cid = self.cluster_id
        if cid is None:
            cid = kc.new_cluster_id()
            self.kafka_dir.mkdir(parents=True, exist_ok=True)
            record = {"cluster_id": cid, "brokers": self.brokers, "version": self.stack.kafka_version,
                      "secure": self.secrets is not None}
            self.cluster_file.write_text(json.dumps(record, indent=2) + "\n")
        return cid

    def _format(self, node: kc.KafkaNode, cluster_id: str) -> None:
        if (node.log_dir / "meta.properties").is_file():
            return
        argv = ["java", "-cp", f"{kafka_libs()}/*", "kafka.tools.StorageTool", "format",
                "-t", cluster_id, "-c", str(node.config_file)]
        if self.admin_password is not None:
            argv += ["--add-scram", kc.scram_format_argument(self.admin_password)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            detail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            if self.admin_password is not None:
                detail = detail.replace(self.admin_password, "***")
            raise StackError(f"formatting kafka node {node.node_id} storage failed: {detail}")

    def prepare(self) -> str:
        """Write server.properties, format every node's storage once; returns the cluster id."""
        require_java()
        if not kafka_installed(self.stack.kafka_version):
            raise StackError("kafka is not installed: run `lineage stack install`")
        self._write_configs()
        cid = self._ensure_cluster_id()
        for node in self.nodes:
            self._format(node, cid)
        return cid

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        """Start every node that is not running and wait until all answer; idempotent."""
        self.prepare()
        for node in self.nodes:
            self._start_process(node)
        self.wait_healthy([n.node_id for n in self.nodes], timeout)

    def start_node(self, node_id: int, timeout: float = 120.0) -> None:
        """Start one node (after :meth:`stop_node` or a crash) and wait until it is back in the cluster."""
        self.prepare()
        self._start_process(self.node(node_id))
        self.wait_healthy([node_id], timeout)

    def _start_process(self, node: kc.KafkaNode) -> None:
        proc = self.process(node.node_id)
        if proc.is_running():
            return
        for port in (node.port, node.controller_port):
            if port_open(f"{kc.HOST}:{port}"):
                raise StackError(f"port {port} for kafka node {node.node_id} is already in use by another process")
        proc.start()

    def stop_node(self, node_id: int, timeout: float = 30.0) -> bool:
        """Controlled shutdown of one node (SIGTERM; SIGKILL after `timeout`)."""
        return self.process(node_id).stop(timeout)

    def kill_node(self, node_id: int) -> bool:
        """Crash one node (SIGKILL)."""
        return self.process(node_id).kill()

    def restart_node(self, node_id: int, timeout: float = 120.0) -> None:
        """Stop and start one node, keeping its data."""
        self.stop_node(node_id)
        self.start_node(node_id, timeout)

    def processes(self) -> list[ManagedProcess]:
        return [self.process(n.node_id) for n in self.nodes]

    def running_nodes(self) -> list[int]:
        return [n.node_id for n in self.nodes if self.process(n.node_id).is_running()]

    def wait_healthy(self, node_ids: list[int], timeout: float = 120.0) -> ClusterInfo:
        """Wait until each node in `node_ids` accepts connections and is listed in cluster metadata."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            for node_id in node_ids:
                proc = self.process(node_id)
                if not proc.is_running():
                    raise StackError(
                        f"kafka node {node_id} exited during start-up; last lines of {proc.log_file}: {proc.tail()}"
                    )
            addresses = [self.node(i).address for i in node_ids]
            if all(port_open(a) for a in addresses):
                try:
                    info = describe(",".join(addresses), timeout=min(5.0, max(1.0, deadline - time.monotonic())),
                                    extra=self.client_config)
                    missing = set(node_ids) - set(info.broker_ids)
                    if not missing:
                        return info
                    last = f"brokers {sorted(missing)} not yet registered"
                except StackError as exc:
                    last = str(exc)
            if time.monotonic() >= deadline:
                proc = self.process(node_ids[0])
                raise StackError(
                    f"kafka at {','.join(addresses)} not healthy after {timeout:.0f}s ({last}); "
                    f"last lines of {proc.log_file}: {proc.tail()}"
                )
            time.sleep(0.5)

    def status(self, timeout: float = 3.0) -> dict[str, Any]:
        """Health of the managed nodes (see :func:`shell.stack.status`)."""
        brokers = []
        for node in self.nodes:
            proc = self.process(node.node_id)
            pid = proc.pid()
            answering = port_open(node.address)
            state = "up" if pid and answering else "starting" if pid else "unmanaged" if answering else "stopped"
            brokers.append({"id": node.node_id, "address": node.address, "status": state,
                            "pid": pid, "log": str(proc.log_file)})
        return {"bootstrap": self.bootstrap, "cluster_id": self.cluster_id, "brokers": brokers}
