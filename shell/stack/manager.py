"""The local stack as a whole: install, up, down, status.

Kafka and Redis are *managed* (started here) when the configured bootstrap / Redis URL points
at the stack's own loopback ports; otherwise they are *external* and only probed, so
``LINEAGE_KAFKA_BOOTSTRAP`` / ``LINEAGE_REDIS_URL`` are how you point at an existing service.
The schema registry is optional: managed when ``stack.registry`` is on and no other
``schema_registry_url`` is set (or that URL names its loopback port), external when the URL
names another address, otherwise disabled.
"""
from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from typing import Any

from lineage.exceptions import StackError
from lineage.pii.sealing import KeyRing
from lineage.settings import Settings
from lineage.topics import ensure_topics
from sinks.clickhouse.status import clickhouse_status, redact
from shell.stack.install import install_kafka, install_redis, install_registry
from shell.stack.kafka import KafkaCluster, describe, port_open
from shell.stack.process import ManagedProcess, managed_processes, stop_all
from shell.stack.redis import NAME as REDIS_NAME
from shell.stack.redis import RedisServer, ping, redis_address
from shell.stack.registry import NAME as REGISTRY_NAME
from shell.stack.registry import RegistryServer, registry_address
from shell.stack.registry import probe as registry_probe
from shell.stack.acl import create_users, grant_deployment
from shell.stack.secrets import StackSecrets

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: Statuses that count as healthy for ``lineage stack status --check``.
HEALTHY = {"up", "owned", "absent", "disabled"}


def http_probe(url: str, timeout: float = 1.0) -> str:
    """"up" on HTTP 2xx, "unhealthy" on another answer, "stopped" if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own loopback URL
            return "up" if 200 <= resp.status < 300 else "unhealthy"
    except urllib.error.HTTPError:
        return "unhealthy"
    except (urllib.error.URLError, OSError, ValueError):
        return "stopped"


def _bootstrap_addresses(bootstrap: str) -> set[tuple[str, int]]:
    found = set()
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if port.isdigit():
            found.add((host.strip("[]"), int(port)))
    return found


class Stack:
    """Kafka (KRaft, 1..5 nodes), Redis and the optional registry under ``settings.data_dir``; ClickHouse is probed."""

    def __init__(self, settings: Settings, brokers: int | None = None, secure: bool = False) -> None:
        """``secure``: SASL/SCRAM + ACLs for Kafka, ACL users for Redis (see :mod:`shell.stack.secrets`).

        A data directory that was started secured stays so (its ``secrets/`` says so) until
        ``down --wipe``; asking to secure a cluster that was formatted without it is refused.
        """
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.secrets = StackSecrets.load(self.data_dir)
        if secure and self.secrets is None:
            if KafkaCluster.formatted(self.data_dir):
                raise StackError(f"{self.data_dir / 'kafka'} holds an unsecured cluster: run `lineage stack down "
                                 "--wipe` first to start it with --secure")
            self.secrets = StackSecrets.create(self.data_dir)
        self.kafka = KafkaCluster(self.data_dir, settings.stack, brokers, self.secrets)
        self.redis = RedisServer(self.data_dir, settings.stack.redis_port, self.secrets)
        self.registry = RegistryServer(self.data_dir, settings.stack.registry_port)

    @property
    def secure(self) -> bool:
        return self.secrets is not None

    def role_settings(self, role: str) -> Settings:
        """The settings a component of ``role`` runs with on this stack (its credentials when secured)."""
        if self.secrets is None:
            return self.settings
        return self.secrets.settings_for(self.settings, role)

    @property
    def admin_settings(self) -> Settings:
        return self.role_settings("admin")

    @property
    def kafka_managed(self) -> bool:
        """True if the configured bootstrap names one of our nodes."""
        ours = {p for n in self.kafka.nodes for p in (n.port,)}
        return any(h in LOCAL_HOSTS and p in ours for h, p in _bootstrap_addresses(self.settings.kafka_bootstrap))

    @property
    def redis_managed(self) -> bool:
        host, port = redis_address(self.settings.redis_url)
        return host in LOCAL_HOSTS and port == self.settings.stack.redis_port

    @property
    def registry_managed(self) -> bool:
        """True if ``stack.registry`` is on with no other registry URL, or the URL names ours."""
        url = self.settings.schema_registry_url
        if url is None:
            return self.settings.stack.registry
        host, port = registry_address(url)
        return host in LOCAL_HOSTS and port == self.settings.stack.registry_port

    def install(self) -> list[str]:
        """Install the missing pieces of the managed components; returns what was installed."""
        done = []
        if self.kafka_managed and install_kafka(self.settings.stack.kafka_version):
            done.append(f"kafka {self.settings.stack.kafka_version}")
        if self.redis_managed and install_redis():
            done.append("redis-server")
        if self.registry_managed and install_registry():
            done.append("schema registry (Apicurio)")
        return done

    def up(self, timeout: float = 120.0) -> dict[str, Any]:
        """Install what is missing, start Kafka and Redis, wait until healthy; idempotent.

        On a secured stack this also creates each role's SCRAM user, the ACLs of the configured
        deployment (topic prefix, app id), its topics, and the per-role env files under ``secrets/``.
        """
        self.install()
        if self.secrets is not None and not (self.kafka_managed and self.redis_managed):
            raise StackError("--secure needs the stack's own Kafka and Redis (the bootstrap and Redis URL "
                             "must name the stack's ports)")
        if self.kafka_managed:
            self.kafka.start(timeout)
            if self.secrets is not None:
                admin = self.admin_settings
                create_users(admin, self.secrets)
                grant_deployment(admin, self.settings)
                ensure_topics(admin)  # workers and sinks may not create topics on a secured cluster
                self.secrets.write_env_files(self.settings)
        elif not self._external_kafka_ok():
            raise StackError(f"external kafka at {self.settings.kafka_bootstrap} does not answer")
        if self.redis_managed:
            self.redis.start()
        elif not ping(self.settings.redis_url):  # redact(): the URL may hold a password
            raise StackError(f"external redis at {redact(self.settings.redis_url)} does not answer PING")
        url = self.settings.schema_registry_url
        if self.registry_managed:
            self.registry.start(timeout)
        elif url is not None and self.settings.stack.registry and registry_probe(url) != "up":
            raise StackError(f"external schema registry at {redact(url)} does not answer GET /subjects")
        KeyRing.under(self.settings.keys_dir).ensure()  # the seal key emitters need before any worker runs
        return self.status()

    def _external_kafka_ok(self) -> bool:
        try:
            describe(self.settings.kafka_bootstrap, extra=self.settings.kafka_config)
        except StackError:
            return False
        return True

    def other_processes(self) -> list[ManagedProcess]:
        """Pid-file processes that are not Kafka, Redis or the registry (pipeline workers, sinks, ...)."""
        own = {n.name for n in self.kafka.nodes} | {REDIS_NAME, REGISTRY_NAME}
        return [p for p in managed_processes(self.data_dir) if p.name not in own and not p.name.startswith("kafka-")]

    def down(self, timeout: float = 30.0, wipe: bool = False) -> list[str]:
        """Stop everything with a pid file under ``run/`` (pipeline first, then registry, Redis, Kafka)."""
        stopped = stop_all(self.other_processes(), timeout)
        if self.registry.stop(timeout):
            stopped.append(REGISTRY_NAME)
        if self.redis.stop(timeout):
            stopped.append(REDIS_NAME)
        kafka_procs = [p for p in managed_processes(self.data_dir) if p.name.startswith("kafka-")]
        stopped += stop_all(kafka_procs, timeout)
        if wipe:
            for sub in ("kafka", "redis", "registry", "secrets"):
                shutil.rmtree(self.data_dir / sub, ignore_errors=True)
        return stopped

    # -- status ---------------------------------------------------------------------------
    def _kafka_status(self) -> dict[str, Any]:
        if not self.kafka_managed:
            report: dict[str, Any] = {"bootstrap": self.settings.kafka_bootstrap, "managed": False, "brokers": []}
            try:
                info = describe(self.settings.kafka_bootstrap, timeout=3.0, extra=self.settings.kafka_config)
            except StackError:
                return {**report, "status": "stopped", "cluster_id": None}
            return {**report, "status": "up", "cluster_id": info.cluster_id,
                    "brokers": [{"id": b, "status": "up"} for b in info.broker_ids]}
        report = {**self.kafka.status(), "managed": True, "secure": self.secure}
        states = [b["status"] for b in report["brokers"]]
        if all(s == "stopped" for s in states):
            return {**report, "status": "stopped"}
        answering = [b["address"] for b in report["brokers"] if b["status"] in ("up", "unmanaged")]
        if not answering:
            return {**report, "status": "starting"}
        try:
            info = describe(",".join(answering), timeout=3.0, extra=self.kafka.client_config)
        except StackError:
            return {**report, "status": "unhealthy"}
        report["cluster_id"] = info.cluster_id
        if set(info.broker_ids) != {n.node_id for n in self.kafka.nodes}:
            return {**report, "status": "degraded"}
        return {**report, "status": "up" if all(s == "up" for s in states) else "degraded"}

    def _redis_status(self) -> dict[str, Any]:
        if self.redis_managed:
            return {**self.redis.status(), "managed": True}
        url = self.settings.redis_url
        return {"status": "up" if ping(url) else "stopped", "url": redact(url), "managed": False}

    def _registry_status(self) -> dict[str, Any]:
        url = self.settings.schema_registry_url
        # A registry started with `stack up --registry` is reported even when the flag is not set now.
        if self.registry_managed or (url is None and self.registry.is_running()):
            return {**self.registry.status(), "managed": True}
        if url is None:
            return {"status": "disabled", "url": None, "managed": False}
        return {"status": registry_probe(url), "url": redact(url), "managed": False}

    def status(self) -> dict[str, Any]:
        """Each component, its address and health (the shape of ``lineage stack status --json``)."""
        api_url = self.settings.api_url
        api = http_probe(f"{api_url}/health")
        return {
            "kafka": self._kafka_status(),
            "redis": self._redis_status(),
            "registry": self._registry_status(),
            "clickhouse": clickhouse_status(self.settings.clickhouse_dsn),
            "api": {"status": api, "url": api_url},
            "dashboard": {"status": api, "url": f"{api_url}/dashboard"},
            "processes": [
                {"name": p.name, "status": "up" if p.is_running() else "stopped", "pid": p.pid(),
                 "log": str(p.log_file)}
                for p in self.other_processes()
            ],
        }


def unhealthy(report: dict[str, Any]) -> list[str]:
    """Components of a status report that fail ``--check`` (API/dashboard only if they answer badly)."""
    components = ("kafka", "redis", "registry", "clickhouse")
    bad = [k for k in components if k in report and report[k]["status"] not in HEALTHY]
    bad += [k for k in ("api", "dashboard") if report[k]["status"] == "unhealthy"]
    bad += [p["name"] for p in report.get("processes", []) if p["status"] != "up"]
    return bad


__all__ = ["Stack", "http_probe", "port_open", "unhealthy"]
