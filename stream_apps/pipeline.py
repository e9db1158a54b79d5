"""One batch through validate -> PII split -> enrich -> sample -> seal: plain synchronous code.

The Faust agent (:mod:`stream_apps.agents`) feeds batches in and produces what comes out; this
module does no Kafka I/O, so it is the same code under test, in the worker and in the bench.
Feature snapshots and subject ids are split off right after decoding; from then on only the
sealed (AES-256-GCM) snapshot and the keyed subject reference travel. Records are never logged.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

import redis
from confluent_kafka import KafkaException

from lineage.exceptions import DecodeError, DeliveryError, EncodeError, LineageError
from lineage.registry import RegistryError
from lineage.graph import build_record, to_micros
from lineage.pii.crypto import seal
from lineage.pii.exceptions import KekError
from lineage.pii.keys import DataKeys
from lineage.pii.store import SnapshotStore, seal_snapshot
from stream_apps.deadletter import dead_letter_headers, seal_aad
from stream_apps.enrichment import correlation_id, merge_lineage, model_key, training_lineage
from stream_apps.exceptions import Rejected
from stream_apps.models import ModelLineage
from stream_apps.runstate import RunStates, RunTransition
from stream_apps.sampling import decide
from stream_apps.validation import ValidationPolicy, check_size, validate_event

DLQ_KEY_REF = "__deadletter__"
#: Failures of the infrastructure, not of a message: the batch is retried, never dead-lettered.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    DeliveryError,
    KafkaException,
    OSError,
    KekError,
    RegistryError,
)
Headers = list[tuple[str, bytes | None]]


@dataclass(slots=True)
class InMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    hold_prediction: str | None = None  # set on hold records: index them once delivered


@dataclass
class BatchResult:
    records: list[OutRecord] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    table_updates: list[tuple[str, ModelLineage]] = field(default_factory=list)


@dataclass(slots=True)
class _Accepted:
    msg: InMessage
    kind: str
    event: dict[str, Any]
    subject_id: str | None = None
    snapshot: dict[str, Any] | None = None
    subject_ref: str = ""


class Pipeline:
    """Stateless between batches; all state is in Redis, the snapshot store and the lookup table."""

    def __init__(
        self,
        settings: Any,
        codec: Any,
        keys: DataKeys,
        store: SnapshotStore,
        model_lineage: Callable[[str], ModelLineage | None],
        policy: ValidationPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.keys = keys
        self.store = store
        self.model_lineage = model_lineage
        self.policy = policy or ValidationPolicy()
        self.clock = clock
        self.runs = RunStates(keys.redis, keys.space)
        topics = settings.topics
        self.kind_of_topic = {name: kind for kind, name in topics.event_topics.items()}
        self.openlineage_topic = topics.openlineage
        self.inference_topic = topics.inference
        self.graph_topic, self.hold_topic, self.deadletter_topic = topics.graph, topics.pii_hold, topics.deadletter

    # --- per message -------------------------------------------------------------------------

    def _decode(self, msg: InMessage) -> tuple[str, dict[str, Any]]:
        raw = msg.value or b""
        check_size(raw, self.policy)
        if msg.topic == self.openlineage_topic:
            return self._from_openlineage(raw)
        try:
            decoded = self.codec.decode(raw)
        except DecodeError as exc:
            raise Rejected(exc.reason, exc.detail) from None
        expected = self.kind_of_topic.get(msg.topic)
        if expected is not None and decoded.kind != expected:
            raise Rejected("wrong_topic", f"{decoded.kind} event on the {expected} topic")
        return decoded.kind, decoded.record

    def _from_openlineage(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Rejected("bad_json" if raw else "empty", f"not JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise Rejected("bad_json", f"expected a JSON object, got {type(obj).__name__}")
        from producers.openlineage import from_openlineage

        try:
            kind, record = from_openlineage(obj)
            # Round-trip through the schema: the same checks and defaults as Avro input.
            decoded = self.codec.decode(self.codec.encode(kind, record))
        except (EncodeError, DecodeError) as exc:
            raise Rejected("openlineage_invalid", str(exc)) from None
        except LineageError as exc:
            raise Rejected("openlineage_invalid", str(exc)) from None
        return decoded.kind, decoded.record

    def _accept(self, msg: InMessage, now_us: int) -> _Accepted:
        kind, record = self._decode(msg)
        acc = _Accepted(msg, kind, record)
        if kind == "inference":
            # Split PII off before anything else looks at the event.
            acc.subject_id = record.pop("subject_id", None)
            acc.snapshot = record.pop("feature_snapshot", None)
        validate_event(kind, record, now_us, self.policy, acc.subject_id, acc.snapshot)
        if kind == "inference":
            acc.subject_ref = self.keys.subject_ref(str(acc.subject_id))
            acc.subject_id = None
        return acc

    # --- per batch ---------------------------------------------------------------------------

    def process(self, batch: list[InMessage]) -> BatchResult:
        """Everything the batch produces. Raises only on infrastructure failure (retry the batch)."""
        now_us = int(self.clock() * 1_000_000)
        result = BatchResult()
        accepted: list[_Accepted] = []
        rejected: list[tuple[InMessage, str, str]] = []
        for msg in batch:
            try:
                accepted.append(self._accept(msg, now_us))
            except Rejected as exc:
                rejected.append((msg, exc.reason, exc.detail))
            except INFRA_ERRORS:
                raise
            except Exception as exc:  # a bug must not stall the partition: dead-letter, count, go on
                rejected.append((msg, "internal_error", f"{type(exc).__name__} while processing"))

        accepted = self._check_runs(accepted, rejected)
        self._dead_letter(rejected, result)
        self._route(accepted, result)
        return result

    def reject(self, msg: InMessage, reason: str, detail: str) -> BatchResult:
        """Dead-letter one message without processing it (used when its batch trips a bug)."""
        result = BatchResult()
        self._dead_letter([(msg, reason, detail)], result)
        return result

    def _check_runs(self, accepted: list[_Accepted], rejected: list[tuple[InMessage, str, str]]) -> list[_Accepted]:
        runs = [a for a in accepted if a.kind != "inference"]
        verdicts = self.runs.check(
            [
                RunTransition(a.event["run"]["runId"], a.event["eventType"], to_micros(a.event["eventTime"]), a.event["event_id"])
                for a in runs
            ]
        )
        bad = {id(a): v for a, v in zip(runs, verdicts) if v}
        for a in accepted:
            if id(a) in bad:
                rejected.append((a.msg, "run_state", bad[id(a)]))
        return [a for a in accepted if id(a) not in bad]

    def _dead_letter(self, rejected: list[tuple[InMessage, str, str]], result: BatchResult) -> None:
        dlq = self.deadletter_topic
        dlq_key: bytes | None = None
        for msg, reason, detail in rejected:
            raw = msg.value or b""
            # May hold a subject id and a feature snapshot: never plaintext on the dead-letter topic.
            sealed = msg.topic in (self.inference_topic, self.openlineage_topic)
            if sealed:
                if dlq_key is None:
                    dlq_key = self.keys.get_or_create([DLQ_KEY_REF])[DLQ_KEY_REF]
                    assert dlq_key is not None
                nonce, ct = seal(dlq_key, raw, seal_aad(msg.topic, msg.partition, msg.offset))
                raw = nonce + ct
            headers = dead_letter_headers(msg.headers, reason, detail, msg.topic, msg.partition, msg.offset, sealed=sealed)
            result.records.append(OutRecord(dlq, msg.key, raw, headers))
            result.counters[f"dlq.{reason}"] += 1

    def _route(self, accepted: list[_Accepted], result: BatchResult) -> None:
        inference = [a for a in accepted if a.kind == "inference"]
        refs = {a.subject_ref for a in inference}
        flagged = self._flagged(refs)
        deks = self.keys.get_or_create({a.subject_ref for a in inference if a.snapshot is not None})
        captured: list[tuple[dict[str, Any], bytes]] = []
        holds: list[tuple[str, dict[str, Any]]] = []
        infos: list[dict[str, Any]] = []
        pending: list[tuple[_Accepted, str, dict[str, Any] | None]] = []
        for a in accepted:
            corr, source = correlation_id(a.kind, a.event, a.msg.headers)
            a.event["correlation_id"] = corr
            info: dict[str, Any] | None = None
            if a.kind == "training":
                entry = training_lineage(a.event)
                if entry is not None:
                    result.table_updates.append((entry[0], merge_lineage(self.model_lineage(entry[0]), entry[1])))
            elif a.kind == "inference":
                info = self._inference(a, source, a.subject_ref in flagged)
                infos.append(info)
                dek = deks.get(a.subject_ref) if a.snapshot is not None else None
                if a.snapshot is not None and dek is None:
                    info["snapshot_status"] = "subject_erased"
                elif dek is not None:
                    blob = seal_snapshot(dek, a.subject_ref, a.event["prediction_id"], a.snapshot)
                    info["snapshot_status"] = "held"
                    if info["tier"] != "routine":
                        captured.append((info, blob))
                    holds.append(
                        (a.event["prediction_id"], {"sealed": blob.decode(), "event": _jsonable(a.event), "inference": info, "correlation_id": corr})
                    )
                a.snapshot = None
                result.counters[f"tier.{info['tier']}"] += 1
            pending.append((a, corr, info))
            result.counters[f"accepted.{a.kind}"] += 1
        for (info, _), stored in zip(captured, self.store.append_many([blob for _, blob in captured])):
            info["snapshot_pointer"], info["snapshot_sha256"] = stored.pointer, stored.sha256
            info["snapshot_status"] = "stored"
        for info in infos:
            full = info["tier"] == "routine" or bool(info["snapshot_pointer"])
            info["lineage_complete"] = bool(info["training_run_id"] and info["feature_sets"]) and full
        hold_topic, graph_topic, records = self.hold_topic, self.graph_topic, result.records
        for pid, hold in holds:
            records.append(OutRecord(hold_topic, pid.encode(), orjson.dumps(hold), None, pid))
        for a, corr, info in pending:
            graph = build_record(a.kind, a.event, corr, info)
            records.append(OutRecord(graph_topic, a.event["event_id"].encode(), graph.to_bytes()))

    def _flagged(self, refs: set[str]) -> set[str]:
        if not refs:
            return set()
        ordered = sorted(refs)
        found = self.keys.redis.mget([self.keys.space.flagged_subject(r) for r in ordered])
        return {r for r, v in zip(ordered, found) if v is not None}

    def _inference(self, a: _Accepted, source: str, flagged: bool) -> dict[str, Any]:
        ev = a.event
        entry = self.model_lineage(model_key(ev["model_name"], ev["model_version"]))
        given = ev.get("training_run_id") or ""
        run = given or (entry["training_run_id"] if entry else "")
        ev["training_run_id"] = run or None
        ev["subject_ref"] = a.subject_ref
        feature_sets = set(entry["feature_sets"] if entry else ())
        fs = (a.snapshot or {}).get("feature_set")
        if fs:
            feature_sets.add(f"{fs['name']}@{fs['version']}")
        decision = decide(ev, self.settings.sampling, flagged)
        return {
            "prediction_id": ev["prediction_id"],
            "model_name": ev["model_name"],
            "model_version": ev["model_version"],
            "endpoint": ev["endpoint"],
            "decision_type": ev["decision_type"],
            "risk_score": float(ev["risk_score"]),
            "regulatory_class": ev.get("regulatory_class") or "",
            "subject_ref": a.subject_ref,
            "training_run_id": run,
            "training_run_source": "event" if given else ("table" if run else ""),
            "feature_sets": sorted(feature_sets),
            "tier": decision.tier,
            "tier_reason": decision.reason,
            "snapshot_pointer": "",
            "snapshot_sha256": "",
            "snapshot_status": "none",
            "lineage_complete": False,
            "unknown_model_version": entry is None,
            "correlation_source": source,
        }


def _jsonable(event: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(event)
    for k in ("eventTime", "event_time"):
        if k in out:
            out[k] = to_micros(out[k])
    return out
