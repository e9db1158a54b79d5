"""Polling with explicit deadlines, and topic creation for a test's private settings."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from lineage.settings import Settings

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
    t = settings.topics
    return [*t.event_topics.values(), t.deadletter, t.graph, t.pii_hold, t.alerts, t.metrics, t.openlineage]


def make_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create all of `settings.topics` with the configured partitions/replication; wait for leaders."""
    admin = AdminClient(settings.kafka_common())
    t = settings.topics
    configs = {t.pii_hold: {"retention.ms": str(settings.sampling.hold_retention_ms)}}
    names = all_topics(settings)
    new = [NewTopic(n, num_partitions=t.partitions, replication_factor=t.replication, config=configs.get(n, {}))
           for n in names]
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def ready() -> bool:
        md = admin.list_topics(timeout=5)
        return all(
            n in md.topics and md.topics[n].error is None and len(md.topics[n].partitions) == t.partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in names
        )

    wait_until(ready, timeout, f"topics {names} to have leaders")
    return names
