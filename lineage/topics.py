"""Create the pipeline's topics (idempotent) with the configured partitions and retention."""
from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from lineage.exceptions import StackError
from lineage.settings import Settings


def topic_specs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> topic configs for every topic the pipeline reads or writes."""
    t = settings.topics
    specs: dict[str, dict[str, str]] = {name: {} for name in t.event_topics.values()}
    specs[t.openlineage] = {}
    specs[t.deadletter] = {"retention.ms": str(30 * 24 * 3600 * 1000)}
    specs[t.graph] = {}
    specs[t.metrics] = {}
    specs[t.alerts] = {}
    # Encrypted snapshots only; short retention so unflagged ones age out.
    specs[t.pii_hold] = {"retention.ms": str(settings.sampling.hold_retention_ms)}
    return specs


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created."""
    admin = AdminClient(settings.kafka_common())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise StackError(f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}") from None
    new = [
        NewTopic(name, settings.topics.partitions, settings.topics.replication, config=conf)
        for name, conf in topic_specs(settings).items()
        if name not in existing
    ]
    if not new:
        return []
    created: list[str] = []
    for name, fut in admin.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise StackError(f"could not create topic {name}: {exc}") from None
    return created
