"""Operator actions on PII: read a snapshot, flag a prediction (promote its held snapshot), erase a
subject (crypto-shredding). Used by ``lineage snapshot get|flag|erase`` and the sink's decrypt route.

Nothing here holds a key: decrypting goes through a :class:`~lineage.pii.holder.SnapshotOpener`
(the administrator's own keys on the CLI, the key holder's socket in the sink), and erasure is
given the data keys by its caller.

Every attempt is recorded in the query audit log (:mod:`sinks.access.audit`) with who acted (an
:class:`~sinks.access.roles.Actor`, never self-declared), why and the outcome, refused and failed
attempts too; a successful one is recorded before its result is returned. A decrypt releases
nothing unless its record was acknowledged; an erasure or a flag has taken effect when its record
is written, so an unacknowledged record makes the command fail loudly (AuditError) after the fact.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson
import redis
from confluent_kafka import KafkaException, Producer

from lineage.exceptions import DeliveryError
from lineage.graph import build_record
from lineage.kafka import ACKED_PRODUCER, client_config, produce_and_wait, read_record
from lineage.keyspace import KeySpace
from lineage.pii.exceptions import PiiError, ReasonRequired, SubjectErased
from lineage.pii.holder import SnapshotOpener
from lineage.pii.keys import unpack
from lineage.pii.store import SnapshotStore, digest, sealed_subject
from lineage.settings import Settings
from sinks.access.audit import DECRYPT, ERASE, FLAG, AuditTrail
from sinks.access.roles import Actor
from sinks.pii.erasure import count_dead_letters, count_held, count_stored_snapshots, rewrite_persistence

if TYPE_CHECKING:
    from lineage.pii.keys import DataKeys

FLAG_NS = uuid.UUID("2c7d8f4a-91b3-5e0f-8d6a-3f1e2b4c5d70")


def _redis(settings: Settings) -> Any:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=10)


@contextmanager
def _trail(settings: Settings, audit: AuditTrail | None) -> Iterator[AuditTrail]:
    """The caller's audit trail, or one made (and closed) for this operation."""
    if audit is not None:
        yield audit
        return
    with AuditTrail.from_settings(settings) as made:
        yield made


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def get_snapshot(
    settings: Settings, pointer: str, actor: Actor, why: str, sha256: str | None = None,
    audit: AuditTrail | None = None, *, opener: SnapshotOpener,
) -> dict[str, Any]:
    """Decrypt one stored snapshot through ``opener``, if ``why`` gives a reason; the audit record comes first.

    The opener is handed the pointer and the digest of the very bytes read here, so it decrypts
    exactly the snapshot that was authorised (and checks the digest itself)."""
    with _trail(settings, audit) as trail:
        with trail.attempt(actor, DECRYPT, pointer, params={"sha256": sha256} if sha256 else {}, reason=why,
                           refusals=(ReasonRequired, SubjectErased)) as attempt:
            if not why.strip():
                raise ReasonRequired("a reason is required to decrypt a snapshot (--reason)")
            blob = SnapshotStore.from_settings(settings).read(pointer, sha256)
            ref = attempt.details["subject_ref"] = sealed_subject(blob)
            opened_ref, snapshot = opener.open_snapshot(pointer, digest(blob))
            if opened_ref != ref:
                raise PiiError(f"the key holder opened a snapshot of another subject at {pointer}; refusing")
            attempt.rows = 1
    return {"pointer": pointer, "subject_ref": ref, "snapshot": snapshot, "audit": attempt.entry}


def erase_subject(
    settings: Settings, subject_id: str, actor: Actor, why: str, audit: AuditTrail | None = None,
    *, keys: DataKeys,
) -> dict[str, Any]:
    """Destroy the subject's data key, then have Redis rewrite its files so the key leaves its disk too.

    Returns what became unreadable: the subject's stored snapshots (segment files), held records
    (hold topic) and dead letters sealed under their key (``dlq.key``). The audit record names the
    subject by its pseudonymous reference, never by ``subject_id``; it is written once the key is
    gone, whatever happens to the rewrite after it (whose failure is then raised).
    """
    with _trail(settings, audit) as trail:
        with trail.attempt(actor, ERASE, "", reason=why) as attempt:
            ref = attempt.what = keys.subject_ref(subject_id)
            wrapped = keys.redis.get(keys.space.dek(ref))
            existed = keys.erase(ref)
            keys.redis.delete(keys.space.flagged_subject(ref))
            attempt.details["key_destroyed"] = existed
            attempt.rows = int(existed)
    entry = attempt.entry
    persistence = rewrite_persistence(keys.redis, gone=unpack(wrapped)[1] if wrapped is not None else None)
    unreadable = {
        "stored_snapshots": count_stored_snapshots(settings, ref),
        "held_records": count_held(settings, ref),
        "dead_letters": count_dead_letters(settings, ref),
    }
    return {"subject_ref": ref, "key_destroyed": existed, "erased_at": _iso(entry["ts"]),
            "unreadable": unreadable, "persistence": persistence, "audit": entry}


def _held(settings: Settings, r: Any, space: KeySpace, prediction_id: str) -> dict[str, Any]:
    where = r.get(space.hold(prediction_id))
    if where is None:
        raise PiiError(
            f"no held snapshot for prediction {prediction_id} (never processed, sent without a snapshot, "
            "or older than the hold retention)"
        )
    topic, partition, offset = where.decode().rsplit("/", 2)
    try:
        msg = read_record(settings.kafka_common(), topic, int(partition), int(offset))
    except KafkaException as exc:
        raise PiiError(f"cannot read the hold topic {topic}: {exc.args[0].str()}") from None
    if msg is None:
        raise PiiError(f"held snapshot of {prediction_id} is no longer on {topic} (retention passed?)")
    if msg.key() != prediction_id.encode():
        raise PiiError(f"hold index for {prediction_id} points at another record; refusing")
    held: dict[str, Any] = orjson.loads(msg.value() or b"null")
    return held


def flag_prediction(
    settings: Settings, prediction_id: str, actor: Actor, why: str, audit: AuditTrail | None = None
) -> dict[str, Any]:
    """Promote a prediction's held snapshot to the store, publish its full lineage, mark the subject."""
    with _trail(settings, audit) as trail:
        with trail.attempt(actor, FLAG, prediction_id, reason=why, refusals=(SubjectErased,)) as attempt:
            result = _flag(settings, prediction_id, actor, why)
            attempt.details.update(
                {k: result[k] for k in ("subject_ref", "snapshot_pointer", "already_flagged") if k in result}
            )
            attempt.rows = 0 if result["already_flagged"] else 1
    return {**result, "audit": attempt.entry}


def _flag(settings: Settings, prediction_id: str, actor: Actor, why: str) -> dict[str, Any]:
    r, space = _redis(settings), KeySpace.of(settings)
    marker = space.flagged_prediction(prediction_id)
    done = r.get(marker)
    if done is not None:
        return {**orjson.loads(done), "already_flagged": True}
    held = _held(settings, r, space, prediction_id)
    ref = held["inference"]["subject_ref"]
    if r.exists(space.erased(ref)):
        raise SubjectErased(ref)
    store = SnapshotStore.from_settings(settings, writer_id=f"flag-{uuid.uuid4().hex[:8]}")
    (stored,) = store.append_many([held["sealed"].encode()])
    info = dict(held["inference"])
    info.update(
        tier="flagged",
        tier_reason=f"flagged by {actor.name}: {why}"[:500],
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
        produce_and_wait(producer, [(settings.topics.graph, record.event_id.encode(), record.to_bytes(), None, 0)], 30)
    except DeliveryError as exc:
        raise PiiError(f"flagged lineage not confirmed by Kafka: {exc}") from None
    result = {"prediction_id": prediction_id, "subject_ref": ref, "event_id": record.event_id,
              "snapshot_pointer": stored.pointer, "snapshot_sha256": stored.sha256}
    pipe = r.pipeline()
    pipe.set(space.flagged_subject(ref), orjson.dumps({"by": actor.name, "prediction_id": prediction_id}))
    pipe.set(marker, orjson.dumps(result))
    pipe.execute()
    return {**result, "already_flagged": False}
