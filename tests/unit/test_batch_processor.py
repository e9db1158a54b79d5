"""The event path's batch processor, built directly: real codec, real snapshot store in a temporary
directory; the Redis-backed collaborators (data keys, run states, flags) and the clock are
in-memory stand-ins, so this is the pure processing logic without Faust, Kafka or Redis."""
from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from lineage.codec import Codec
from lineage.graph import GraphRecord
from lineage.pii.sealing import KeyRing, Sealer, seal_record
from lineage.pii.store import SnapshotStore, open_snapshot
from lineage.settings import PiiSettings, Settings
from lineage.deadletters import DeadLetterErased, deadletter_key_ref, open_dead_letter
from stream_apps.event_path.batch import BatchResult, InMessage, OutRecord
from stream_apps.event_path.processor import BatchProcessor
from stream_apps.models import ModelLineage
from stream_apps.runstate import RunTransition

NOW_S = 1_760_000_000.0
NOW_US = int(NOW_S * 1_000_000)
SUBJECT = "subject-4711-jane.doe@example.com"
SECRET = "income-93817.25"


class MemoryKeys:
    """Data keys in a dict; the subject reference is keyed like the real one."""

    def __init__(self) -> None:
        self.deks: dict[str, bytes] = {}
        self.erased: set[str] = set()

    pseudonym_key = b"unit-test-pseudonym-key"

    def subject_ref(self, subject_id: str) -> str:
        return hmac.new(self.pseudonym_key, subject_id.encode(), hashlib.sha256).hexdigest()[:32]

    def get_or_create(self, refs: Iterable[str]) -> dict[str, bytes | None]:
        return {r: None if r in self.erased else self.deks.setdefault(r, os.urandom(32)) for r in dict.fromkeys(refs)}

    def get(self, ref: str) -> bytes:
        return self.deks[ref]


class MemoryRuns:
    """Every transition legal, unless its run id is listed in ``refuse``."""

    def __init__(self, refuse: Iterable[str] = ()) -> None:
        self.refuse = set(refuse)
        self.seen: list[RunTransition] = []

    def check(self, transitions: Sequence[RunTransition]) -> list[str]:
        self.seen += transitions
        return ["run already ended with COMPLETE" if t.run_id in self.refuse else "" for t in transitions]


class MemoryFlags:
    def __init__(self, flagged: Iterable[str] = ()) -> None:
        self.refs = set(flagged)

    def flagged(self, refs: set[str]) -> set[str]:
        return refs & self.refs


class Harness:
    def __init__(self, tmp_path: Path, lineage: dict[str, ModelLineage] | None = None, accept_unsealed: bool = False) -> None:
        self.settings = Settings(data_dir=tmp_path, pii=PiiSettings(accept_unsealed=accept_unsealed))
        ring = KeyRing.under(tmp_path / "keys")
        self.sealer = Sealer(ring.ensure())
        self.topics = self.settings.topics
        self.codec = Codec.from_settings(self.settings)
        self.keys = MemoryKeys()
        self.runs = MemoryRuns()
        self.flags = MemoryFlags()
        self.segments = tmp_path / "segments"
        self.table: dict[str, ModelLineage] = dict(lineage or {})
        self.processor = BatchProcessor(
            self.settings,
            self.codec,
            self.keys,
            SnapshotStore(self.segments, "unit"),
            self.runs,
            self.flags,
            self.lookup,
            seal_keys=ring,
            clock=lambda: NOW_S,
        )
        self._offset = 0

    def lookup(self, key: str) -> ModelLineage | None:
        return self.table.get(key)

    def message(self, topic: str, value: bytes, headers: list[tuple[str, bytes | None]] | None = None) -> InMessage:
        self._offset += 1
        return InMessage(topic, 0, self._offset, None, value, headers or [])

    def avro(self, kind: str, record: dict[str, Any], sealed: bool = True) -> InMessage:
        """An event as the SDK writes it: an inference event's PII sealed for the pipeline."""
        if kind == "inference" and sealed:
            record = seal_record(self.sealer, dict(record))
        return self.message(self.topics.event_topics[kind], self.codec.encode(kind, record))

    @property
    def period_key(self) -> str:
        return deadletter_key_ref(NOW_S, self.settings.pii.deadletter_key_days)


def run_event(kind: str, event_type: str = "COMPLETE") -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "eventType": event_type,
        "eventTime": NOW_US,
        "producer": "https://example.com/etl",
        "run": {"runId": str(uuid.uuid4()), "parentRunId": None, "facets": {}},
        "job": {"namespace": "etl", "name": f"{kind}_job", "facets": {}},
        "inputs": [{"namespace": "postgres://db:5432", "name": "shop.public.orders", "version": None, "facets": {}}],
        "outputs": [{"namespace": "s3://lake", "name": "orders/clean", "version": None, "facets": {}}],
    }
    if kind == "training":
        ev["training"] = {
            "model_name": "credit",
            "model_version": "7",
            "artifact_digest": "sha256:" + "ab" * 32,
            "code_version": "deadbeef",
            "feature_sets": [{"name": "customer_fs", "version": "3"}],
        }
    return ev


def inference_event(risk: float = 0.1, prediction_id: str | None = None, snapshot: bool = True) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "correlation_id": None,
        "event_time": NOW_US,
        "producer": "https://example.com/scoring",
        "endpoint": "score-v1",
        "model_name": "credit",
        "model_version": "7",
        "prediction_id": prediction_id or f"p-{uuid.uuid4().hex}",
        "decision_type": "approve",
        "risk_score": risk,
        "regulatory_class": None,
        "subject_id": SUBJECT,
        "training_run_id": None,
        "feature_snapshot": {"feature_set": {"name": "customer_fs", "version": "3"},
                             "values": {"income": f'"{SECRET}"', "age": "41"}} if snapshot else None,
    }


def graph_records(result: BatchResult, topic: str) -> dict[str, GraphRecord]:
    return {rec.event_id: rec for rec in (GraphRecord.from_bytes(r.value) for r in result.records if r.topic == topic)}


def headers_of(record: OutRecord) -> dict[str, bytes]:
    return dict(record.headers or [])


def test_avro_dataset_event_is_accepted_as_one_graph_record(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    ev = run_event("dataset")
    result = h.processor.process([h.avro("dataset", ev)])

    assert result.counters == {"accepted.dataset": 1}
    (out,) = result.records
    assert out.topic == h.topics.graph and out.key == ev["event_id"].encode()
    rec = GraphRecord.from_bytes(out.value)
    assert (rec.event_id, rec.kind, rec.event_type, rec.event_time) == (ev["event_id"], "dataset", "COMPLETE", NOW_US)
    assert rec.correlation_id and rec.nodes and rec.edges
    assert h.runs.seen == [RunTransition(ev["run"]["runId"], "COMPLETE", NOW_US, ev["event_id"])]
    assert result.table_updates == []


@pytest.mark.parametrize(
    ("topic_kind", "value", "reason"),
    [
        ("dataset", b"garbage that is not Avro", "bad_magic"),
        ("dataset", b"", "empty"),
        ("feature", None, "wrong_topic"),  # a dataset event on the feature topic
    ],
)
def test_undecodable_message_is_dead_lettered_with_its_reason(tmp_path: Path, topic_kind: str, value: bytes | None, reason: str) -> None:
    h = Harness(tmp_path)
    raw = value if value is not None else h.codec.encode("dataset", run_event("dataset"))
    msg = h.message(h.topics.event_topics[topic_kind], raw, [("traceparent", b"00-abc")])
    good = run_event("dataset")
    result = h.processor.process([msg, h.avro("dataset", good)])

    dead = [r for r in result.records if r.topic == h.topics.deadletter]
    assert len(dead) == 1
    hdr = headers_of(dead[0])
    assert hdr["dlq.reason"] == reason.encode()
    assert hdr["dlq.topic"] == msg.topic.encode() and hdr["dlq.offset"] == str(msg.offset).encode()
    assert hdr["dlq.detail"] and hdr["traceparent"] == b"00-abc"  # the original headers stay
    # Undecodable bytes may hold anything: sealed under the dead-letter key of the period.
    assert hdr["dlq.sealed"] == b"AES-256-GCM" and hdr["dlq.key"] == h.period_key.encode()
    assert dead[0].value != raw and open_dead_letter(h.keys, dead[0].value, hdr) == raw
    assert result.counters[f"dlq.{reason}"] == 1 and result.counters["accepted.dataset"] == 1
    assert set(graph_records(result, h.topics.graph)) == {good["event_id"]}  # the rest of the batch flows on


def test_openlineage_json_that_is_not_an_object_is_dead_lettered_sealed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msg = h.message(h.topics.openlineage, b"[1, 2]")
    (dead,) = h.processor.process([msg]).records
    hdr = headers_of(dead)
    assert hdr["dlq.reason"] == b"bad_json" and hdr["dlq.sealed"] == b"AES-256-GCM"
    assert open_dead_letter(h.keys, dead.value, hdr) == b"[1, 2]"


def test_a_run_state_anomaly_is_kept_flagged_and_counted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    ev = run_event("dataset", "RUNNING")
    h.runs.refuse.add(ev["run"]["runId"])
    result = h.processor.process([h.avro("dataset", ev)])
    assert not [r for r in result.records if r.topic == h.topics.deadletter]
    rec = graph_records(result, h.topics.graph)[ev["event_id"]]
    assert rec.payload["run_anomaly"] == "run already ended with COMPLETE"
    (run_node,) = [n for n in rec.nodes if n.node_type == "run"]
    assert run_node.attributes["run_anomaly"] == "run already ended with COMPLETE"
    assert all("run_anomaly" not in n.attributes for n in rec.nodes if n.node_type != "run")
    assert result.counters["run.anomaly"] == 1 and result.counters["accepted.dataset"] == 1


def test_a_legal_run_event_carries_no_anomaly(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    ev = run_event("dataset", "RUNNING")
    rec = graph_records(h.processor.process([h.avro("dataset", ev)]), h.topics.graph)[ev["event_id"]]
    assert "run_anomaly" not in rec.payload and all("run_anomaly" not in n.attributes for n in rec.nodes)


def test_inference_subject_and_snapshot_never_leave_in_clear(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"credit@7": {"training_run_id": "r-1", "feature_sets": ["customer_fs@3"],
                                        "state": "COMPLETE", "event_time": NOW_US}})
    consequential = inference_event(risk=0.95)
    routine = inference_event(risk=0.01, prediction_id="p-routine-000000")  # hash falls above the default rate
    invalid = inference_event(prediction_id="not a valid id")  # dead-lettered, with subject and snapshot in it
    result = h.processor.process([h.avro("inference", e) for e in (consequential, routine, invalid)])

    for rec in result.records:
        blobs = [rec.key or b"", rec.value, *(v for _, v in rec.headers or [])]
        for secret in (SUBJECT, SECRET):
            assert not any(secret.encode() in b for b in blobs), f"{secret} in clear on {rec.topic}"
    for segment in h.segments.rglob("*"):
        if segment.is_file():
            assert SUBJECT.encode() not in segment.read_bytes() and SECRET.encode() not in segment.read_bytes()

    ref = h.keys.subject_ref(SUBJECT)
    graph = graph_records(result, h.topics.graph)
    assert set(graph) == {consequential["event_id"], routine["event_id"]}
    conseq = graph[consequential["event_id"]].inference
    assert conseq is not None
    assert conseq["subject_ref"] == ref and conseq["tier"] == "consequential"
    assert conseq["snapshot_status"] == "stored" and conseq["snapshot_pointer"] and conseq["lineage_complete"]
    assert conseq["training_run_id"] == "r-1" and conseq["training_run_source"] == "table"
    plain = graph[routine["event_id"]].inference
    assert plain is not None and plain["tier"] == "routine" and plain["snapshot_status"] == "held"
    assert not plain["snapshot_pointer"]

    # Every snapshot is held sealed (a later flag can promote it) and opens with the subject's key.
    holds = {r.key: orjson.loads(r.value) for r in result.records if r.topic == h.topics.pii_hold}
    assert set(holds) == {consequential["prediction_id"].encode(), routine["prediction_id"].encode()}
    held = open_snapshot(h.keys, holds[routine["prediction_id"].encode()]["sealed"].encode())  # type: ignore[arg-type]
    assert held["values"]["income"] == f'"{SECRET}"'

    (dead,) = [r for r in result.records if r.topic == h.topics.deadletter]
    hdr = headers_of(dead)
    assert hdr["dlq.reason"] == b"bad_id" and hdr["dlq.sealed"] == b"AES-256-GCM"
    assert hdr["dlq.key"] == ref.encode()  # under the subject's own key: erasing the subject erases it
    assert result.counters["accepted.inference"] == 2 and result.counters["dlq.bad_id"] == 1


def test_sealed_events_carry_no_pii_in_their_bytes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msg = h.avro("inference", inference_event(risk=0.95))
    assert msg.value is not None and SUBJECT.encode() not in msg.value and SECRET.encode() not in msg.value
    decoded = h.codec.decode(msg.value).record
    assert decoded["subject_id"] == "" and decoded["feature_snapshot"] is None and decoded["sealed"].startswith("ls1.")


def test_unsealed_inference_is_dead_lettered_sealed_and_counted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msg = h.avro("inference", inference_event(risk=0.95), sealed=False)
    result = h.processor.process([msg])
    (dead,) = result.records
    hdr = headers_of(dead)
    assert hdr["dlq.reason"] == b"unsealed_pii" and hdr["dlq.key"] == h.keys.subject_ref(SUBJECT).encode()
    assert SUBJECT.encode() not in dead.value and open_dead_letter(h.keys, dead.value, hdr) == msg.value
    assert result.counters["unsealed.inference"] == 1 and result.counters["dlq.unsealed_pii"] == 1


def test_unsealed_inference_is_accepted_and_counted_while_migration_allows(tmp_path: Path) -> None:
    h = Harness(tmp_path, accept_unsealed=True)
    ev = inference_event(risk=0.95)
    result = h.processor.process([h.avro("inference", ev, sealed=False)])
    info = graph_records(result, h.topics.graph)[ev["event_id"]].inference
    assert info is not None and info["subject_ref"] == h.keys.subject_ref(SUBJECT) and info["snapshot_status"] == "stored"
    assert result.counters["unsealed.inference"] == 1 and result.counters["accepted.inference"] == 1


def test_a_tampered_or_moved_envelope_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    moved = seal_record(h.sealer, inference_event(prediction_id="p-aaaaaaaaaaaaaaaa"))
    moved["prediction_id"] = "p-bbbbbbbbbbbbbbbb"  # the envelope is bound to its prediction id
    flipped = seal_record(h.sealer, inference_event())
    flipped["sealed"] = flipped["sealed"][:-6] + ("A" if flipped["sealed"][-6] != "A" else "B") + flipped["sealed"][-5:]
    foreign = seal_record(Sealer(KeyRing.under(tmp_path / "other").ensure()), inference_event())
    msgs = [h.avro("inference", r, sealed=False) for r in (moved, flipped, foreign)]
    result = h.processor.process(msgs)
    reasons = [headers_of(r)["dlq.reason"] for r in result.records]
    assert reasons == [b"unsealable", b"unsealable", b"seal_key_unknown"]
    assert all(headers_of(r)["dlq.key"] == h.period_key.encode() for r in result.records)  # subject unknown


def test_a_new_seal_key_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rotated = Sealer(KeyRing.under(tmp_path / "keys").create())
    ev = inference_event(risk=0.95)
    result = h.processor.process([h.message(h.topics.inference, h.codec.encode("inference", seal_record(rotated, dict(ev))))])
    assert result.counters["accepted.inference"] == 1


def test_dead_letter_of_an_erased_subject_keeps_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.keys.erased.add(h.keys.subject_ref(SUBJECT))
    (dead,) = h.processor.process([h.avro("inference", inference_event(prediction_id="not a valid id"))]).records
    hdr = headers_of(dead)
    assert dead.value == b"" and hdr["dlq.erased"] == b"1" and "dlq.sealed" not in hdr
    with pytest.raises(DeadLetterErased):
        open_dead_letter(h.keys, dead.value, hdr)


def test_erased_subject_keeps_lineage_without_a_snapshot(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.keys.erased.add(h.keys.subject_ref(SUBJECT))
    ev = inference_event(risk=0.95)
    result = h.processor.process([h.avro("inference", ev)])
    info = graph_records(result, h.topics.graph)[ev["event_id"]].inference
    assert info is not None and info["snapshot_status"] == "subject_erased" and not info["lineage_complete"]
    assert not [r for r in result.records if r.topic == h.topics.pii_hold]


def test_training_event_in_the_batch_yields_a_table_update(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    training = run_event("training")
    result = h.processor.process([h.avro("dataset", run_event("dataset")), h.avro("training", training)])

    assert result.table_updates == [("credit@7", {"training_run_id": training["run"]["runId"],
                                                  "feature_sets": ["customer_fs@3"], "state": "COMPLETE",
                                                  "event_time": NOW_US})]
    assert result.counters["accepted.training"] == 1


def test_a_completed_training_entry_is_not_replaced_by_an_earlier_start(tmp_path: Path) -> None:
    start = run_event("training", "START")
    done: ModelLineage = {"training_run_id": start["run"]["runId"], "feature_sets": ["customer_fs@3"],
                          "state": "COMPLETE", "event_time": NOW_US}
    h = Harness(tmp_path, {"credit@7": done})
    result = h.processor.process([h.avro("training", start)])
    assert result.table_updates == [("credit@7", done)]


def test_a_bug_on_one_message_dead_letters_only_that_message(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def lookup(key: str) -> ModelLineage | None:
        raise RuntimeError("lookup bug")

    h.processor.model_lineage = lookup  # tripped by inference events only, in the routing stage
    dataset, inference = run_event("dataset"), inference_event()
    result = h.processor.process([h.avro("dataset", dataset), h.avro("inference", inference)])

    assert set(graph_records(result, h.topics.graph)) == {dataset["event_id"]}
    (dead,) = [r for r in result.records if r.topic == h.topics.deadletter]
    assert headers_of(dead)["dlq.reason"] == b"internal_error"
    assert result.counters["dlq.internal_error"] == 1


def test_infrastructure_failure_raises_for_a_retry(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def down(transitions: Sequence[RunTransition]) -> list[str]:
        raise redis.exceptions.ConnectionError("redis is down")

    h.runs.check = down  # type: ignore[method-assign]
    with pytest.raises(redis.exceptions.ConnectionError):
        h.processor.process([h.avro("dataset", run_event("dataset"))])


def test_a_prediction_after_its_training_event_in_the_same_batch_joins_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)  # the table knows nothing of credit@7 before the batch
    training = run_event("training")
    before, after = inference_event(risk=0.1), inference_event(risk=0.1)
    result = h.processor.process([h.avro("inference", before), h.avro("training", training), h.avro("inference", after)])

    graph = graph_records(result, h.topics.graph)
    joined = graph[after["event_id"]].inference
    assert joined is not None
    assert joined["training_run_id"] == training["run"]["runId"] and joined["training_run_source"] == "table"
    assert joined["feature_sets"] == ["customer_fs@3"] and not joined["unknown_model_version"]
    early = graph[before["event_id"]].inference
    assert early is not None and early["training_run_id"] == "" and early["unknown_model_version"]


def test_two_training_events_of_one_key_in_a_batch_merge_in_order(tmp_path: Path) -> None:
    done = run_event("training", "COMPLETE")
    start = dict(done, event_id=str(uuid.uuid4()), eventType="START")
    h = Harness(tmp_path)
    result = h.processor.process([h.avro("training", done), h.avro("training", start)])
    assert [u[1]["state"] for u in result.table_updates] == ["COMPLETE", "COMPLETE"]
