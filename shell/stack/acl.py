"""Who may do what on a secured cluster: SCRAM users per role and the ACLs of one deployment.

A deployment is a topic prefix plus an app id (``settings.topics``, ``settings.app_id``); the
grants name its topics literally (Faust's own topics by the app id's prefix), so several
deployments can share one cluster without reaching each other's data.

============  ==========================================================================
role          may
============  ==========================================================================
emitter       write the input topics (four event classes, OpenLineage) and the metrics topic
worker        read the inputs; write the outputs (graph, PII hold,
              dead letters, alerts, metrics, audit); use its groups (the events group and
              the Faust app id); everything on its internal topics (changelogs, counters,
              Faust's own ``<app_id>-*`` topics, which it may create)
sink          read the outputs; write the inputs (HTTP intake), metrics, alerts, audit and the
              signed checkpoints (no other role may write those);
              use its group; see the pipeline's groups' offsets (the lag monitor)
admin         everything (the broker's super user)
============  ==========================================================================

Worker and sink may also *describe* every topic of the deployment (metadata only: they check at
start that the topics exist). Nothing is granted to anyone else, and a client without
credentials cannot even connect.
"""
from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from lineage.exceptions import StackError
from lineage.settings import Settings
from lineage.topics import topic_specs, window_counts_topic
from shell.stack.kafka import admin_client
from shell.stack.secrets import ROLES, StackSecrets

SCRAM_ITERATIONS = 8192
Grant = tuple[str, ResourceType, str, ResourcePatternType, AclOperation]


def input_topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [*t.event_topics.values(), t.openlineage]


def output_topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.graph, t.pii_hold, t.deadletter, t.alerts, t.metrics, t.audit]


def sink_group(settings: Settings) -> str:
    return f"{settings.app_id}.clickhouse-sink"


def deployment_grants(settings: Settings) -> list[Grant]:
    """(role, resource type, name, pattern, operation) of every ALLOW the deployment needs."""
    t = settings.topics
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    lit, pre = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    op = AclOperation
    inputs, outputs = input_topics(settings), output_topics(settings)
    # Signed checkpoints: only the sink writes them (no one else may add, and none may delete).
    internal = [n for n in topic_specs(settings) if n not in inputs and n not in outputs and n != t.checkpoints]
    grants: list[Grant] = []
    grants += [("emitter", topic, n, lit, op.WRITE) for n in [*inputs, t.metrics]]

    grants += [("worker", topic, n, lit, op.READ) for n in inputs]
    grants += [("worker", topic, n, lit, op.WRITE) for n in outputs]
    grants += [("worker", topic, n, lit, op.ALL) for n in internal]
    grants += [("worker", topic, f"{settings.app_id}-", pre, op.ALL),
               ("worker", topic, window_counts_topic(settings), lit, op.ALL)]
    grants += [("worker", group, g, lit, op.READ) for g in (settings.app_id, settings.events_group)]

    grants += [("sink", topic, n, lit, op.READ) for n in outputs]
    grants += [("sink", topic, n, lit, op.WRITE) for n in [*inputs, t.metrics, t.alerts, t.audit, t.checkpoints]]
    grants += [("sink", topic, t.checkpoints, lit, op.READ)]
    grants += [("sink", group, sink_group(settings), lit, op.READ),
               ("sink", group, settings.app_id, pre, op.DESCRIBE)]

    every = list(topic_specs(settings))
    grants += [(role, topic, n, lit, op.DESCRIBE) for role in ("worker", "sink") for n in every]
    return list(dict.fromkeys(grants))


def create_users(admin_settings: Settings, secrets: StackSecrets, timeout: float = 30.0) -> None:
    """Create (or reset to the stored password) every role's SCRAM credential."""
    admin = admin_client(admin_settings.kafka_bootstrap, admin_settings.kafka_config)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [UserScramCredentialUpsertion(role, info, secrets.kafka[role].encode()) for role in ROLES if role != "admin"]
    for user, fut in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).items():
        try:
            fut.result(timeout=timeout + 5)
        except KafkaException as exc:
            raise StackError(f"could not create kafka user {user}: {exc.args[0].str()}") from None


def grant_deployment(admin_settings: Settings, deployment: Settings, timeout: float = 30.0) -> int:
    """Create the ACLs of ``deployment`` (idempotent: an existing ACL is left as it is); returns how many."""
    admin = admin_client(admin_settings.kafka_bootstrap, admin_settings.kafka_config)
    bindings = [
        AclBinding(rtype, name, pattern, f"User:{role}", "*", operation, AclPermissionType.ALLOW)
        for role, rtype, name, pattern, operation in deployment_grants(deployment)
    ]
    for binding, fut in admin.create_acls(bindings, request_timeout=timeout).items():
        try:
            fut.result()
        except KafkaException as exc:
            raise StackError(f"could not create the ACL {binding}: {exc.args[0].str()}") from None
    return len(bindings)


__all__ = ["create_users", "deployment_grants", "grant_deployment", "input_topics", "output_topics"]
