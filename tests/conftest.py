"""Shared fixtures. Nothing here touches the stack at import time.

Where the real services come from (never a fake), in order:
1. ``LINEAGE_TEST_BOOTSTRAP`` (+ ``LINEAGE_TEST_REDIS_URL``): an existing cluster;
2. a Docker engine that answers ``docker info``: testcontainers (Kafka + Redis);
3. otherwise the local stack (``shell.stack``) on test ports 29092/29093 and 26379, data in
   ``.lineage-test/`` (wiped at session start, stopped at session end).

The schema registry (only for tests that ask for ``registry_url``): ``LINEAGE_TEST_REGISTRY_URL``
(a Confluent-compatible API), else the stack's own Apicurio build, started under the session
stack's data dir (port 28081 with the local stack, a free port otherwise) and stopped at the end.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import free_port
from helpers import make_topics as _make_topics
from lineage.pii.sealing import KeyRing
from lineage.settings import Settings, StackSettings, TopicSettings
from lineage.topics import owned_by

REPO = Path(__file__).resolve().parents[1]
TEST_DATA_DIR = REPO / ".lineage-test"
TEST_STACK = StackSettings(kafka_port=29092, kafka_controller_port=29093, redis_port=26379, kafka_heap="512m",
                           registry_port=28081)
LOCK_WAIT_S = 480.0


@dataclass(frozen=True)
class StackInfo:
    """Where the session's Kafka and Redis are."""

    bootstrap: str
    redis_url: str
    data_dir: Path
    source: str  # "env" | "testcontainers" | "local"
    cluster_id: str | None = None
    stack: StackSettings | None = None  # set when the local stack runs it

    def settings(self, **overrides: Any) -> Settings:
        """Settings pointing at this stack (data dir = the stack's)."""
        base: dict[str, Any] = {"data_dir": self.data_dir, "kafka_bootstrap": self.bootstrap,
                                "redis_url": self.redis_url}
        if self.stack is not None:
            base["stack"] = self.stack
        return Settings(**{**base, **overrides})


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _lock_session(lock_path: Path) -> Any:
    """One local test stack per checkout: wait for another pytest session on the same ports."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "w")  # noqa: SIM115 - held for the whole session
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                fh.close()
                pytest.fail(f"another test session holds {lock_path} (the local test stack) for too long")
            time.sleep(1.0)


def _local_stack() -> Iterator[StackInfo]:
    from shell.stack import Stack

    lock = _lock_session(TEST_DATA_DIR / "session.lock")
    try:
        info = StackInfo("127.0.0.1:29092", "redis://127.0.0.1:26379/0", TEST_DATA_DIR, "local", stack=TEST_STACK)
        stack = Stack(info.settings())
        stack.down()  # leftovers of an aborted session
        for child in TEST_DATA_DIR.iterdir():
            if child.name != "session.lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        stack = Stack(info.settings(), brokers=1)
        try:
            stack.up()
            yield StackInfo(**{**info.__dict__, "cluster_id": stack.kafka.cluster_id})
        finally:
            stack.down()
    finally:
        lock.close()


def _container_stack(tmp: Path) -> Iterator[StackInfo]:
    try:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.redis import RedisContainer
    except ImportError:  # testcontainers < 4.10
        from testcontainers.kafka import KafkaContainer  # type: ignore[no-redef]
        from testcontainers.redis import RedisContainer  # type: ignore[no-redef]

    with KafkaContainer().with_kraft() as kafka, RedisContainer() as redis_c:
        redis_url = f"redis://{redis_c.get_container_host_ip()}:{redis_c.get_exposed_port(6379)}/0"
        yield StackInfo(kafka.get_bootstrap_server(), redis_url, tmp, "testcontainers")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """The session's real Kafka + Redis (see module docstring for where they come from)."""
    bootstrap = os.environ.get("LINEAGE_TEST_BOOTSTRAP")
    if bootstrap:
        redis_url = os.environ.get("LINEAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        yield StackInfo(bootstrap, redis_url, tmp_path_factory.mktemp("stack"), "env")
    elif _docker_available():
        yield from _container_stack(tmp_path_factory.mktemp("stack"))
    else:
        yield from _local_stack()



@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A second local stack, secured like `lineage stack up --secure` (SASL/SCRAM + ACLs, Redis ACL
    users), on free ports; started on first use, stopped and wiped at the end of the session."""
    from integration.secure_support import secure_stack as start

    yield from start(tmp_path_factory.mktemp("secure-stack"))


@pytest.fixture(scope="session")
def registry_url(stack: StackInfo) -> Iterator[str]:
    """A real Confluent-compatible schema registry's base URL (see module docstring)."""
    from lineage.exceptions import StackError
    from shell.stack.install import install_registry
    from shell.stack.registry import RegistryServer, probe

    given = os.environ.get("LINEAGE_TEST_REGISTRY_URL")
    if given:
        state = probe(given, timeout=5.0)
        if state != "up":
            pytest.fail(f"LINEAGE_TEST_REGISTRY_URL={given}: GET /subjects did not answer ({state})", pytrace=False)
        yield given.rstrip("/")
        return
    port = stack.stack.registry_port if stack.stack is not None else free_port()
    server = RegistryServer(stack.data_dir, port)
    try:
        install_registry()
        server.start(timeout=180)
    except StackError as exc:
        server.stop()
        pytest.fail(f"cannot start the schema registry: {exc}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


def _delete_topics(made: list[Settings]) -> None:
    if not made:
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(made[0].kafka_common())
    try:
        names = admin.list_topics(timeout=10).topics
    except Exception:  # the broker is gone (a fault test stopped it): nothing to tidy
        return
    doomed = sorted({n for s in made for n in owned_by(s, names)})
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            try:
                future.result(30)
            except Exception:  # already gone, or the broker is busy: never fail a test on tidying
                pass


@pytest.fixture
def settings_factory(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Settings]]:
    """Build Settings for a test: unique topic prefix ``t<uuid8>``, app id, tmp data dir, the session stack.

    ``topics`` may be a dict of TopicSettings overrides (merged with the unique prefix).
    The test's topics (its prefix and its app id's) are deleted when it ends, so a long session
    does not pile up thousands of partitions on the one broker (open files).
    """
    made: list[Settings] = []

    def make(**overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        topics: dict[str, Any] = {"prefix": f"t{tag}", "openlineage": f"t{tag}.openlineage.events"}
        given = overrides.pop("topics", None)
        if isinstance(given, TopicSettings):
            topic_settings = given
        else:
            topic_settings = TopicSettings(**{**topics, **(given or {})})
        base: dict[str, Any] = {
            "data_dir": tmp_path_factory.mktemp(f"lineage-{tag}"),
            "app_id": f"test-{tag}",
            "topics": topic_settings,
        }
        settings = stack.settings(**{**base, **overrides})
        # As `lineage stack up` does: the pipeline's seal key exists before any emitter starts.
        KeyRing.under(settings.keys_dir).ensure()
        made.append(settings)
        return settings

    yield make
    _delete_topics(made)


@pytest.fixture
def test_settings(settings_factory: Callable[..., Settings]) -> Settings:
    """Settings with private topics, app id and data dir on the session stack."""
    return settings_factory()


@pytest.fixture
def make_topics() -> Callable[[Settings], list[str]]:
    """``make_topics(settings)``: create every topic of ``settings.topics``; returns the names."""
    return _make_topics
