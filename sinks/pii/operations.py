"""Operator actions on PII: read a snapshot (audited), flag a prediction (promote its held
snapshot), erase a subject (crypto-shredding). Used by ``lineage snapshot get|flag|erase``."""
from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from lineage.exceptions import DeliveryError
from lineage.graph import build_record
from lineage.kafka import ACKED_PRODUCER, client_config, produce_and_wait
from lineage.keyspace import KeySpace
from lineage.pii.crypto import kek_provider
from lineage.pii.exceptions import PiiError, SubjectErased
from lineage.pii.keys import DataKeys
from lineage.pii.store import SnapshotStore, open_snapshot, sealed_subject
from lineage.settings import Settings
from sinks.pii.audit import AuditLog

FLAG_NS = uuid.UUID("2c7d8f4a-91b3-5e0f-8d6a-3f1e2b4c5d70")


def _keys(settings: Settings) -> DataKeys:
    return DataKeys(redis.Redis.from_url(settings.redis_url, socket_timeout=10), kek_provider(settings), KeySpace.of(settings))


def get_snapshot(settings: Settings, pointer: str, who: str, why: str, sha256: str | None = None) -> dict[str, Any]:
    """Decrypt one stored snapshot. Writes an audit record for every attempt, refused ones too."""
    if not why.strip():
        raise PiiError("a reason is required to decrypt a snapshot (--reason)")
    store, audit = SnapshotStore.from_settings(settings), AuditLog.from_settings(settings)
    blob = store.read(pointer, sha256)
    ref = sealed_subject(blob)
    try:
        snapshot = open_snapshot(_keys(settings), blob)
    except SubjectErased:
        audit.record("decrypt", who, why, pointer=pointer, subject_ref=ref, outcome="refused: subject erased")
        raise
    except PiiError as exc:
        audit.record("decrypt", who, why, pointer=pointer, subject_ref=ref, outcome=f"failed: {type(exc).__name__}")
        raise
    entry = audit.record("decrypt", who, why, pointer=pointer, subject_ref=ref, outcome="ok")
    return {"pointer": pointer, "subject_ref": ref, "snapshot": snapshot, "audit": entry}


def erase_subject(settings: Settings, subject_id: str, who: str, why: str) -> dict[str, Any]:
    """Destroy the subject's data key; from now on their snapshots cannot be decrypted."""
    keys = _keys(settings)
    ref = keys.subject_ref(subject_id)
    existed = keys.erase(ref)
    keys.redis.delete(keys.space.flagged_subject(ref))
    entry = AuditLog.from_settings(settings).record("erase", who, why, subject_ref=ref, key_destroyed=existed)
    return {"subject_ref": ref, "key_destroyed": existed, "erased_at": entry["ts"], "audit": entry}


def _held(settings: Settings, keys: DataKeys, prediction_id: str) -> dict[str, Any]:
    where = keys.redis.get(keys.space.hold(prediction_id))
    if where is None:
        raise PiiError(
            f"no held snapshot for prediction {prediction_id} (never processed, sent without a snapshot, "
            "or older than the hold retention)"
        )
    topic, partition, offset = where.decode().rsplit("/", 2)
    consumer = Consumer(client_config(settings.kafka_common(), {
        "group.id": f"lineage-flag-{uuid.uuid4().hex}", "enable.auto.commit": False, "auto.offset.reset": "error"}))
    try:
        consumer.assign([TopicPartition(topic, int(partition), int(offset))])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                raise PiiError(f"cannot read the hold topic {topic}: {err.str()}")
            if msg.key() != prediction_id.encode():
                raise PiiError(f"hold index for {prediction_id} points at another record; refusing")
            held: dict[str, Any] = orjson.loads(msg.value() or b"null")
            return held
    finally:
        consumer.close()
    raise PiiError(f"held snapshot of {prediction_id} not readable within 30s (retention passed?)")


def flag_prediction(settings: Settings, prediction_id: str, who: str, why: str) -> dict[str, Any]:
    """Promote a prediction's held snapshot to the store, publish its full lineage, mark the subject."""
    keys = _keys(settings)
    marker = keys.space.flagged_prediction(prediction_id)
    done = keys.redis.get(marker)
    if done is not None:
        return {**orjson.loads(done), "already_flagged": True}
    held = _held(settings, keys, prediction_id)
    ref = held["inference"]["subject_ref"]
    if keys.erased(ref):
        raise SubjectErased(ref)
    store = SnapshotStore.from_settings(settings, writer_id=f"flag-{uuid.uuid4().hex[:8]}")
    (stored,) = store.append_many([held["sealed"].encode()])
    AuditLog.from_settings(settings).record(
        "promote", who, why, prediction_id=prediction_id, subject_ref=ref, pointer=stored.pointer
    )
    info = dict(held["inference"])
    info.update(
        tier="flagged",
        tier_reason=f"flagged by {who}: {why}"[:500],
        snapshot_pointer=stored.pointer,
        snapshot_sha256=stored.sha256,
        snapshot_status="stored",
        lineage_complete=bool(info.get("training_run_id") and info.get("feature_sets")),
    )
    event = dict(held["event"])
    event["supersedes_event_id"] = event["event_id"]
    event["event_id"] = str(uuid.uuid5(FLAG_NS, event["event_id"]))
    record = build_record("inference", event, held["correlation_id"], info)
    producer = Producer(client_config(settings.kafka_common(), ACKED_PRODUCER))
    try:
        produce_and_wait(producer, [(settings.topics.graph, record.event_id.encode(), record.to_bytes(), None)], 30)
    except DeliveryError as exc:
        raise PiiError(f"flagged lineage not confirmed by Kafka: {exc}") from None
    result = {"prediction_id": prediction_id, "subject_ref": ref, "event_id": record.event_id,
              "snapshot_pointer": stored.pointer, "snapshot_sha256": stored.sha256}
    pipe = keys.redis.pipeline()
    pipe.set(keys.space.flagged_subject(ref), orjson.dumps({"by": who, "prediction_id": prediction_id}))
    pipe.set(marker, orjson.dumps(result))
    pipe.execute()
    return {**result, "already_flagged": False}
