"""Polling with explicit deadlines, and topic creation for a test's private settings."""
from __future__ import annotations

import socket
import uuid
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka.admin import AdminClient

from lineage.settings import Settings
from lineage.topics import ensure_topics, topic_specs

T = TypeVar("T")


class Timeout(AssertionError):
    """A polled condition did not hold before its deadline."""


def wait_until(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `pred` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = pred()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - remembered and reported on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error!r})" if last_error else ""
            raise Timeout(f"timed out after {timeout:.1f}s waiting for {what}{suffix}")
        time.sleep(interval)


def all_topics(settings: Settings) -> list[str]:
    """Every topic the pipeline uses under `settings.topics`."""
    return list(topic_specs(settings))


def make_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create all of `settings.topics` the way the worker and sink do; wait for leaders."""
    ensure_topics(settings, timeout)
    admin = AdminClient(settings.kafka_common())
    specs = topic_specs(settings)
    names = list(specs)

    def ready() -> bool:
        md = admin.list_topics(timeout=5)
        return all(
            n in md.topics and md.topics[n].error is None and len(md.topics[n].partitions) == specs[n].partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in names
        )

    wait_until(ready, timeout, f"topics {names} to have leaders")
    return names


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_TOKENS: dict[tuple[str, str], str] = {}


def api_token(settings: Settings, role: str = "admin") -> str:
    """A real API key of ``role`` for this deployment (created once per key space and role).

    The admin key is also stored as the deployment's CLI key (``<data_dir>/credentials``, 0600),
    so `lineage` commands run by a test authenticate like a user's would after ``make demo``.
    """
    import redis

    from lineage.keyspace import KeySpace
    from sinks.access.credentials import write_api_key
    from sinks.access.keys import ApiKeys

    space = KeySpace.of(settings)
    cached = _TOKENS.get((space.prefix, role))
    if cached is None:
        client = redis.Redis.from_url(settings.redis_url)
        try:
            cached, _ = ApiKeys(client, space).create(f"test-{role}-{uuid.uuid4().hex[:6]}", role)
        finally:
            client.close()
        _TOKENS[(space.prefix, role)] = cached
    if role == "admin" and not settings.credentials_path.exists():
        write_api_key(settings.credentials_path, cached)
    return cached


def auth_headers(settings: Settings, role: str = "admin", reason: str = "") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_token(settings, role)}"}
    if reason:
        headers["X-Lineage-Reason"] = reason
    return headers
