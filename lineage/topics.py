"""Create the pipeline's topics (idempotent) with the configured partitions and retention; remove
what a throwaway deployment (a bench run, a test) left on a shared broker and Redis."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from lineage.exceptions import StackError
from lineage.keyspace import KeySpace
from lineage.settings import Settings


def window_counts_topic(settings: Settings) -> str:
    """The workers' internal window feed (one per app id): what the event path tells the
    completeness windows about each batch, its counters keyed by model."""
    return f"{settings.topics.prefix}.{settings.app_id}.window-counts"


@dataclass(frozen=True)
class TopicSpec:
    """How ``ensure_topics`` creates a topic."""

    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """Topic name -> partitions and configs for every topic the pipeline reads or writes."""
    t = settings.topics
    n = t.partitions
    specs = {name: TopicSpec(n) for name in [*t.event_topics.values(), t.openlineage, t.graph, t.metrics, t.alerts]}
    specs[t.deadletter] = TopicSpec(n, {"retention.ms": str(30 * 24 * 3600 * 1000)})
    # The query audit log: one partition (one hash chain, one order); kept long enough for a stopped sink.
    specs[t.audit] = TopicSpec(1, {"retention.ms": str(settings.audit.topic_retention_days * 24 * 3600 * 1000)})
    # Signed chain checkpoints: one partition (one order), never deleted (the evidence itself).
    specs[t.checkpoints] = TopicSpec(1, {"retention.ms": "-1", "retention.bytes": "-1"})
    # Encrypted snapshots only; short retention so unflagged ones age out.
    specs[t.pii_hold] = TopicSpec(n, {"retention.ms": str(settings.sampling.hold_retention_ms)})
    # Created here, before any worker subscribes: a topic Faust declares itself at start-up can
    # miss the first partition assignment and stay unconsumed until the next metadata refresh.
    specs[window_counts_topic(settings)] = TopicSpec(n, {"retention.ms": str(window_counts_retention_ms(settings))})
    # The model-lineage table's changelog, for the same reason: a global table has one partition.
    specs[model_lineage_changelog(settings)] = TopicSpec(1, {"cleanup.policy": "compact"})
    # The alert tables' changelogs too: a worker assigned before they exist never restores them.
    specs[table_changelog(settings, "alert-window-counts")] = TopicSpec(
        n, {"cleanup.policy": "compact,delete", "retention.ms": str(window_counts_retention_ms(settings))})
    specs[table_changelog(settings, "alert-open-runs")] = TopicSpec(n, {"cleanup.policy": "compact"})
    return specs


def table_changelog(settings: Settings, table: str) -> str:
    """Changelog topic of the workers' Faust table ``table`` (Faust's naming)."""
    return f"{settings.app_id}-{table}-changelog"


def model_lineage_changelog(settings: Settings) -> str:
    """Changelog topic of the workers' ``model_lineage`` global table."""
    return table_changelog(settings, "model_lineage")


def window_counts_retention_ms(settings: Settings) -> int:
    """Feed records are only needed until counted; keep them as long as a window is, and at least a day."""
    return int(max(settings.alerts.window_retention_s, 86_400.0) * 1000)


def ensure_topics(settings: Settings, timeout: float = 30.0, only: Iterable[str] | None = None) -> list[str]:
    """Create missing topics (of ``only``, when given); returns the names created."""
    wanted = None if only is None else set(only)
    admin = AdminClient(settings.kafka_common())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise StackError(f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}") from None
    new = [
        NewTopic(name, spec.partitions, settings.topics.replication, config=spec.config)
        for name, spec in topic_specs(settings).items()
        if name not in existing and (wanted is None or name in wanted)
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


def owned_by(settings: Settings, names: Iterable[str]) -> list[str]:
    """The topic or consumer-group names among ``names`` that belong to the deployment of
    ``settings``: under its topic prefix, named after its app id (Faust's internal topics and
    groups, the event path's group), or its OpenLineage topic."""
    prefixes = (settings.topics.prefix + ".", settings.app_id + "-", settings.app_id + ".")
    return [n for n in names if n.startswith(prefixes) or n in (settings.app_id, settings.topics.openlineage)]


def remove_deployment(settings: Settings, redis_client: Any, timeout: float = 30.0) -> dict[str, int]:
    """Delete everything the deployment of ``settings`` keeps on the broker and in Redis: its
    topics, its consumer groups and its keys. For deployments made to be thrown away (`lineage
    bench` runs on someone's stack); nothing in the pipeline calls it on a real one. Returns how
    many of each went; raises :class:`StackError` naming what could not be removed (a group that
    still has members, say)."""
    admin = AdminClient(settings.kafka_common())
    failed: list[str] = []
    try:
        topics = owned_by(settings, admin.list_topics(timeout=timeout).topics)
        listing = admin.list_consumer_groups(request_timeout=timeout).result()
    except KafkaException as exc:
        raise StackError(f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}") from None
    groups = owned_by(settings, [g.group_id for g in listing.valid])
    futures = {**(admin.delete_topics(topics, operation_timeout=timeout) if topics else {}),
               **(admin.delete_consumer_groups(groups, request_timeout=timeout) if groups else {})}
    for name, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            failed.append(f"{name} ({exc.args[0].name()})")
    keys = 0
    batch: list[Any] = []
    for key in redis_client.scan_iter(match=KeySpace.of(settings).every_key(), count=10_000):
        batch.append(key)
        if len(batch) == 1000:
            keys += redis_client.unlink(*batch)
            batch = []
    if batch:
        keys += redis_client.unlink(*batch)
    if failed:
        raise StackError(f"could not remove {', '.join(failed)}")
    return {"topics": len(topics), "groups": len(groups), "keys": keys}
