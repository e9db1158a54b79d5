"""Golden vectors of the event path: fixed input batches with the exact output of
:class:`~stream_apps.event_path.processor.BatchProcessor`, committed as data
(``event_path.json``) so that any implementation of the per-event work can be held to them.

Everything that varies between runs is fixed or taken out here:

* the clock, the seal key (derived from a constant: a test-only key, never a deployment's),
  the subjects' data keys (derived from their reference) and every id in the inputs;
* what encryption randomises (nonces, ephemeral keys) is opened again with the known keys, so
  a vector states the *plaintext* of every sealed output plus where and under which key it is
  sealed, never ciphertext;
* the run-state verdicts and the model-lineage table a batch sees are inputs of the vector (in
  the worker they come from Redis and the table), and the schema registry is a fixed id map.

Recompute the expected outputs (only when the event path's behaviour changes on purpose, and
review the diff); ``--rebuild`` also builds the inputs anew from :func:`corpus`::

    .venv/bin/python -m tests.golden.event_path [--rebuild]
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lineage.codec import Codec
from lineage.pii.crypto import open_sealed
from lineage.pii.sealing import Sealer, public_key_text, seal_record
from lineage.pii.store import SnapshotStore, open_snapshot
from lineage.deadletters import seal_aad
from lineage.schemas import SchemaRepo
from lineage.settings import PiiSettings, SamplingSettings, Settings, ValidationSettings
from stream_apps.event_path.batch import BatchResult, InMessage
from stream_apps.event_path.processor import BatchProcessor
from stream_apps.models import ModelLineage
from stream_apps.runstate import RunTransition

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "event_path.json"
NOW_S = 1_780_000_000.0  # 2026-05-28T20:26:40Z
NOW_US = int(NOW_S * 1_000_000)
PREFIX = "lineage"


def _x25519(label: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(hashlib.sha256(b"golden vectors, test only: " + label).digest())


SEAL_KEY = _x25519(b"pipeline seal key")
STRANGER_KEY = _x25519(b"a key this pipeline does not hold")


# -- the collaborators, deterministic ---------------------------------------------------------
class GoldenKeys:
    """Data keys derived from their reference; the subjects listed in ``erased`` have none."""

    pseudonym_key = b"golden pseudonym key"

    def __init__(self, erased: Iterable[str] = ()) -> None:
        self.erased_refs = {self.subject_ref(s) for s in erased}

    @staticmethod
    def subject_ref(subject_id: str) -> str:
        return hmac.new(GoldenKeys.pseudonym_key, subject_id.encode(), hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def dek(ref: str) -> bytes:
        return hmac.new(b"golden data key", ref.encode(), hashlib.sha256).digest()

    def get_or_create(self, refs: Iterable[str]) -> dict[str, bytes | None]:
        return {r: None if r in self.erased_refs else self.dek(r) for r in dict.fromkeys(refs)}

    def get(self, ref: str) -> bytes:
        return self.dek(ref)


class GoldenSealKeys:
    """The pipeline's one seal key, fixed."""

    @staticmethod
    def stamp() -> int:
        return 1

    @staticmethod
    def raw_private_keys() -> list[bytes]:
        return [SEAL_KEY.private_bytes_raw()]


class GoldenRuns:
    """The run-state verdicts a vector gives, by run id (empty: a legal transition)."""

    def __init__(self, verdicts: Mapping[str, str]) -> None:
        self.verdicts = dict(verdicts)

    def check(self, transitions: Sequence[RunTransition]) -> list[str]:
        return [self.verdicts.get(t.run_id, "") for t in transitions]


class GoldenFlags:
    def __init__(self, subjects: Iterable[str]) -> None:
        self.refs = {GoldenKeys.subject_ref(s) for s in subjects}

    def flagged(self, refs: set[str]) -> set[str]:
        return refs & self.refs


class GoldenRegistry:
    """Confluent schema ids: ``100 + n`` for the n-th shipped schema in (kind, version) order."""

    def __init__(self, repo: SchemaRepo) -> None:
        self.by_id = {100 + n: s.raw for n, s in enumerate(_shipped(repo))}

    def register(self, subject: str, schema: Any) -> int:
        """The id of an already known schema (the worker registers only shipped schemas)."""
        return next(i for i, raw in self.by_id.items() if raw == schema)

    def schema_by_id(self, schema_id: int) -> Any:
        from lineage.registry import RegistryError

        try:
            return self.by_id[schema_id]
        except KeyError:
            raise RegistryError(f"schema {schema_id} not found", status=404, error_code=40403) from None


def _shipped(repo: SchemaRepo) -> list[Any]:
    return sorted((s for kind in repo.kinds for s in repo.versions(kind)), key=lambda s: (s.kind, s.version))


class PoisonedTable(dict[str, ModelLineage]):
    """The model-lineage table; looking up a key listed in ``poison`` fails as a bug would."""

    def __init__(self, entries: Mapping[str, ModelLineage], poison: Iterable[str]) -> None:
        super().__init__(entries)
        self.poison = set(poison)

    def lookup(self, key: str) -> ModelLineage | None:
        if key in self.poison:
            raise ValueError("lookup failed")
        return self.get(key)


# -- running a vector -------------------------------------------------------------------------
@dataclass
class Vector:
    """One input batch, what the batch's collaborators answer, and (once generated) the output."""

    name: str
    messages: list[dict[str, Any]]
    table: dict[str, ModelLineage] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    poison: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # validation / pii / sampling overrides
    expect: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Vector:
        return cls(**doc)


def settings_for(vector: Vector, data_dir: Path) -> Settings:
    s = vector.settings
    return Settings(
        data_dir=data_dir,
        validation=ValidationSettings(**s.get("validation", {})),
        pii=PiiSettings(**s.get("pii", {})),
        sampling=SamplingSettings(**s.get("sampling", {})),
    )


def run_vector(vector: Vector) -> dict[str, Any]:
    """The batch through a processor built for the vector; the normalised output."""
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        settings = settings_for(vector, Path(tmp))
        repo = SchemaRepo.load()
        codec = Codec(repo, GoldenRegistry(repo), topic_prefix=PREFIX)
        keys = GoldenKeys(vector.erased)
        table = PoisonedTable(vector.table, vector.poison)
        store = SnapshotStore(Path(tmp) / "segments", "golden")
        processor = BatchProcessor(
            settings, codec, keys, store, GoldenRuns(vector.verdicts), GoldenFlags(vector.flagged), table.lookup,
            seal_keys=GoldenSealKeys(), clock=lambda: NOW_S,
        )
        batch = [_message(m) for m in vector.messages]
        return normalise(processor.process(batch), keys, store, settings)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _message(m: Mapping[str, Any]) -> InMessage:
    return InMessage(m["topic"], m["partition"], m["offset"], _unb64(m["key"]), _unb64(m["value"]),
                     [(k, _unb64(v)) for k, v in m["headers"]])


def normalise(result: BatchResult, keys: GoldenKeys, store: SnapshotStore, settings: Settings) -> dict[str, Any]:
    """The result as data with every randomised ciphertext replaced by what it opens to."""
    topics = settings.topics
    records: list[dict[str, Any]] = []
    for r in result.records:
        headers = [(k, v.decode("utf-8", "backslashreplace")) for k, v in (r.headers or [])]
        out: dict[str, Any] = {"topic": r.topic, "key": _b64(r.key), "headers": headers, "hold_prediction": r.hold_prediction}
        if r.topic == topics.graph:
            out["value"] = orjson.loads(r.value)
        elif r.topic == topics.pii_hold:
            hold = orjson.loads(r.value)
            hold["sealed"] = _open_snapshot_doc(hold["sealed"].encode(), keys)
            out["value"] = hold
        elif r.topic == topics.deadletter:
            h = dict(r.headers or [])
            if h.get("dlq.sealed") and r.value:
                src = (h["dlq.topic"].decode(), int(h["dlq.partition"]), int(h["dlq.offset"]))
                plain = open_sealed(keys.dek(h["dlq.key"].decode()), r.value[:12], r.value[12:], seal_aad(*src))
                out["value"] = {"opened": _b64(plain)}
            else:
                out["value"] = {"clear": _b64(r.value)}
        else:
            out["value"] = {"raw": _b64(r.value)}
        records.append(_stored_snapshots(out, store, keys))
    return {
        "records": records,
        "counters": dict(sorted(result.counters.items())),
        "table_updates": [[k, v] for k, v in result.table_updates],
    }


def _open_snapshot_doc(blob: bytes, keys: GoldenKeys) -> dict[str, Any]:
    doc = orjson.loads(blob)
    return {"subject_ref": doc["subject_ref"], "prediction_id": doc["prediction_id"], "alg": doc["alg"],
            "v": doc["v"], "opens_to": open_snapshot(keys, blob)}  # type: ignore[arg-type]


_POINTER = re.compile(r"^(pii-store:v1/)[^/]+-(\d{6})\.seg(/\d+/\d+)$")


def _stored_snapshots(value: Any, store: SnapshotStore, keys: GoldenKeys) -> Any:
    """Every ``snapshot_pointer`` / ``snapshot_sha256`` pair, anywhere in the output: the stored
    blob is read back and its digest checked (the blob is randomised, so the digest is not part
    of the vector), the pointer's segment name (it holds the segment's creation time) is cut to
    its sequence number, and what the blob opens to is stated."""
    if isinstance(value, list):
        return [_stored_snapshots(v, store, keys) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _stored_snapshots(v, store, keys) for k, v in value.items()}
    pointer = value.get("snapshot_pointer")
    if isinstance(pointer, str) and pointer:
        blob = store.read(pointer, value.get("snapshot_sha256") or None)  # raises on a digest mismatch
        m = _POINTER.match(pointer)
        if m is None:
            raise ValueError(f"unexpected snapshot pointer {pointer!r}")
        out["snapshot_pointer"] = f"{m[1]}<segment {m[2]}>{m[3]}"
        out["snapshot_sha256"] = "<verified against the stored blob>"
        out["stored_snapshot"] = _open_snapshot_doc(blob, keys)
    return out


# -- the corpus ---------------------------------------------------------------------------------
class Corpus:
    """Builds the input messages: fixed ids, both wire framings, sealed PII."""

    def __init__(self) -> None:
        self.repo = SchemaRepo.load()
        self.codec = Codec(self.repo, None, topic_prefix=PREFIX)
        self.topics = Settings().topics
        self.sealer = Sealer(public_key_text(SEAL_KEY.public_key()))
        self.stranger = Sealer(public_key_text(STRANGER_KEY.public_key()))
        self.ids = {s.fingerprint: 100 + n for n, s in enumerate(_shipped(self.repo))}
        self.offset = 0
        self.n = 0

    def uid(self) -> str:
        self.n += 1
        return f"01900000-0000-7000-8000-{self.n:012x}"

    def msg(self, topic: str, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = (),
            key: bytes | None = None, partition: int = 0) -> dict[str, Any]:
        self.offset += 1
        return {"topic": topic, "partition": partition, "offset": self.offset, "key": _b64(key), "value": _b64(value),
                "headers": [[k, _b64(v)] for k, v in headers]}

    def avro(self, kind: str, record: dict[str, Any], *, confluent: bool = False, sealed: bool = True,
             stranger: bool = False, topic_kind: str | None = None, **kw: Any) -> dict[str, Any]:
        record = copy.deepcopy(record)
        if kind == "inference" and sealed:
            record = seal_record(self.stranger if stranger else self.sealer, record)
        raw = self.codec.encode(kind, record)
        if confluent:  # same body, Confluent framing: magic 0, 4-byte schema id
            raw = b"\x00" + self.ids[raw[2:10]].to_bytes(4, "big") + raw[10:]
        return self.msg(self.topics.event_topics[topic_kind or kind], raw, **kw)

    def openlineage(self, event: Mapping[str, Any] | bytes, **kw: Any) -> dict[str, Any]:
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        return self.msg(self.topics.openlineage, raw, **kw)

    def run_event(self, kind: str, event_type: str = "COMPLETE", run_id: str | None = None, time_us: int = NOW_US,
                  **over: Any) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "event_id": self.uid(),
            "correlation_id": None,
            "eventType": event_type,
            "eventTime": time_us,
            "producer": "https://example.com/etl",
            "run": {"runId": run_id or self.uid(), "parentRunId": None, "facets": {}},
            "job": {"namespace": "etl", "name": f"{kind}_job", "facets": {}},
            "inputs": [{"namespace": "postgres://db:5432", "name": "shop.public.orders", "version": "v41", "facets": {}}],
            "outputs": [{"namespace": "s3://lake", "name": f"{kind}/orders_clean", "version": None, "facets": {}}],
        }
        if kind == "feature":
            ev["feature_set"] = {"name": "customer_fs", "version": "3", "features": ["income", "age"], "entity": "customer"}
        if kind == "training":
            ev["training"] = {"model_name": "credit", "model_version": "7", "artifact_digest": "sha256:" + "ab" * 32,
                              "code_version": "deadbeef", "feature_sets": [{"name": "customer_fs", "version": "3"}]}
        ev.update(over)
        return ev

    def inference(self, n: int, risk: float = 0.1, version: str = "7", subject: str = "subject-1",
                  snapshot: bool = True, **over: Any) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "event_id": self.uid(), "correlation_id": None, "event_time": NOW_US - 1_000_000,
            "producer": "https://example.com/scoring", "endpoint": "score-v1", "model_name": "credit",
            "model_version": version, "prediction_id": f"p-{n:04d}", "decision_type": "approve", "risk_score": risk,
            "regulatory_class": None, "subject_id": subject, "training_run_id": None,
            "feature_snapshot": {"feature_set": {"name": "customer_fs", "version": "3"},
                                 "values": {"income": "52000", "age": "41"}} if snapshot else None,
        }
        ev.update(over)
        return ev


def corpus() -> list[Vector]:
    c = Corpus()
    t = c.topics
    out: list[Vector] = []
    train_run = c.uid()

    def add(name: str, messages: list[dict[str, Any]], **kw: Any) -> None:
        out.append(Vector(name, messages, **kw))

    # Every event class, both framings.
    for kind in ("dataset", "feature", "training"):
        add(f"{kind} event, single-object framing", [c.avro(kind, c.run_event(kind))])
        add(f"{kind} event, Confluent framing", [c.avro(kind, c.run_event(kind), confluent=True)])
    add("inference event, single-object framing, sealed PII", [c.avro("inference", c.inference(1))],
        table={"credit@7": {"training_run_id": train_run, "feature_sets": ["customer_fs@3"]}})
    add("inference event, Confluent framing, sealed PII", [c.avro("inference", c.inference(2), confluent=True)],
        table={"credit@7": {"training_run_id": train_run, "feature_sets": ["customer_fs@3"]}})
    # Run lifecycle and joins within a batch.
    run = c.uid()
    add("a run START, RUNNING, COMPLETE in one batch", [
        c.avro("dataset", c.run_event("dataset", "START", run, NOW_US - 3_000_000)),
        c.avro("dataset", c.run_event("dataset", "RUNNING", run, NOW_US - 2_000_000)),
        c.avro("dataset", c.run_event("dataset", "COMPLETE", run, NOW_US - 1_000_000)),
    ])
    anomalous = c.uid()
    add("run anomaly reported by the run state: kept and flagged", [
        c.avro("dataset", c.run_event("dataset", "FAIL", anomalous)),
    ], verdicts={anomalous: "run already ended with COMPLETE"})
    add("training then predictions in one batch: the predictions join it", [
        c.avro("training", c.run_event("training", run_id=train_run)),
        c.avro("inference", c.inference(3, risk=0.2)),
        c.avro("inference", c.inference(4, risk=0.95, subject="subject-2")),
    ])
    add("prediction before its training event in one batch: unknown model version", [
        c.avro("inference", c.inference(5, version="8")),
        c.avro("training", c.run_event("training", training={
            "model_name": "credit", "model_version": "8", "artifact_digest": "sha256:" + "cd" * 32,
            "code_version": "cafe", "feature_sets": [{"name": "customer_fs", "version": "4"}]})),
    ])
    add("training FAIL contributes nothing to the table", [c.avro("training", c.run_event("training", "FAIL"))])
    add("two training events of one version merge", [
        c.avro("training", c.run_event("training", training={
            "model_name": "credit", "model_version": "9", "artifact_digest": "sha256:" + "ef" * 32,
            "code_version": "f00d", "feature_sets": [{"name": "customer_fs", "version": "3"}]})),
        c.avro("training", c.run_event("training", training={
            "model_name": "credit", "model_version": "9", "artifact_digest": "sha256:" + "ef" * 32,
            "code_version": "f00d", "feature_sets": [{"name": "txn_fs", "version": "1"}]})),
    ], table={"credit@9": {"training_run_id": train_run, "feature_sets": ["old_fs@1"]}})
    add("training without artifact digest: stored, flagged incomplete", [
        c.avro("training", c.run_event("training", training={
            "model_name": "credit", "model_version": "10", "artifact_digest": None, "code_version": "beef",
            "feature_sets": [{"name": "customer_fs", "version": "3"}]})),
    ])
    # Sampling tiers and reasons.
    table7 = {"credit@7": {"training_run_id": train_run, "feature_sets": ["customer_fs@3"]}}
    add("sampling: every tier", [
        c.avro("inference", c.inference(10 + i, risk=r, **{"subject": f"subject-{10 + i}", **over}))
        for i, (r, over) in enumerate([
            (0.01, {}), (0.02, {}), (0.03, {}), (0.04, {}), (0.5, {}), (0.97, {}),
            (0.1, {"regulatory_class": "credit"}), (0.1, {"decision_type": "deny"}),
            (0.1, {"subject": "flagged-subject"}),
        ])
    ], table=table7, flagged=["flagged-subject"])
    for rate in (0.01, 0.05):
        add(f"sampling: routine rate {rate}", [c.avro("inference", c.inference(30 + i, risk=0.05, subject=f"s-{i}"))
                                               for i in range(8)], table=table7, settings={"sampling": {"routine_rate": rate}})
    add("inference without a snapshot", [c.avro("inference", c.inference(31, snapshot=False))], table=table7)
    add("inference of an erased subject: snapshot not kept", [c.avro("inference", c.inference(32, subject="erased-1"))],
        table=table7, erased=["erased-1"])
    add("correlation id from header, event and traceparent", [
        c.avro("dataset", c.run_event("dataset"), headers=[("correlation_id", b"corr-from-header-1")]),
        c.avro("dataset", c.run_event("dataset", correlation_id="corr-from-event-2"), headers=[("correlation_id", b"")]),
        c.avro("dataset", c.run_event("dataset"), headers=[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]),
        c.avro("inference", c.inference(33, correlation_id="corr-from-event-1"), headers=[("traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01")]),
        c.avro("dataset", c.run_event("dataset"), headers=[("correlation_id", b"bad header value with spaces")]),
    ], table=table7)
    # OpenLineage JSON: run events, static events.
    data = Path(__file__).resolve().parents[1] / "data" / "openlineage"
    for name in sorted(p.name for p in data.glob("*.json")):
        add(f"OpenLineage file {name}", [c.openlineage((data / name).read_bytes())])
    add("OpenLineage training facet and a prediction", [
        c.openlineage({
            "eventType": "COMPLETE", "eventTime": "2026-05-28T20:00:00Z", "producer": "https://example.com/trainer",
            "run": {"runId": c.uid(), "facets": {"training": {
                "_producer": "https://example.com/trainer", "_schemaURL": "https://example.com/training.json",
                "model_name": "credit", "model_version": "11", "artifact_digest": "sha256:" + "12" * 32,
                "code_version": "abc", "feature_sets": [{"name": "customer_fs", "version": "3"}]}}},
            "job": {"namespace": "ml", "name": "train_credit"}, "inputs": [], "outputs": [],
        }),
        c.avro("inference", c.inference(40, version="11")),
    ])
    # Every dead-letter reason.
    dataset_raw = c.codec.encode("dataset", c.run_event("dataset"))
    add("dead letter: empty", [c.msg(t.event_topics["dataset"], b"")])
    add("dead letter: empty (no value at all)", [c.msg(t.event_topics["dataset"], None)])
    add("dead letter: bad_magic", [c.msg(t.event_topics["dataset"], b"not avro at all", headers=[("traceparent", b"00-abc")])])
    add("dead letter: bad_magic in the single-object header", [c.msg(t.event_topics["dataset"], b"\xc3\x02" + dataset_raw[2:])])
    add("dead letter: truncated", [c.msg(t.event_topics["dataset"], dataset_raw[:6]), c.msg(t.event_topics["dataset"], b"\xc3"),
                                   c.msg(t.event_topics["dataset"], dataset_raw[:-5]), c.msg(t.event_topics["dataset"], b"\x00\x00\x01")])
    add("dead letter: unknown_schema", [c.msg(t.event_topics["dataset"], b"\xc3\x01" + b"\x11" * 8 + dataset_raw[10:]),
                                        c.msg(t.event_topics["dataset"], b"\x00\x00\x00\x03\xe7" + dataset_raw[10:])])
    add("dead letter: undecodable", [c.msg(t.event_topics["dataset"], dataset_raw + b"\x00\x01")])
    add("dead letter: wrong_topic", [c.avro("dataset", c.run_event("dataset"), topic_kind="feature")])
    add("dead letter: wrong_topic for an inference event on the dataset topic",
        [c.avro("inference", c.inference(50), topic_kind="dataset")])
    add("dead letter: bad_json", [c.openlineage(b"{not json"), c.openlineage(b"[1, 2]"), c.openlineage(b"")])
    add("dead letter: openlineage_invalid", [c.openlineage({"eventType": "COMPLETE", "producer": "x"})])
    add("dead letter: oversize message", [c.avro("dataset", c.run_event("dataset", job={
        "namespace": "etl", "name": "big_job", "facets": {"sql": '{"query": "' + "x" * 1500 + '"}'}}))],
        settings={"validation": {"max_message_bytes": 1024}})
    add("dead letter: oversize snapshot", [c.avro("inference", c.inference(51))], table=table7,
        settings={"validation": {"max_snapshot_values": 1}})
    add("dead letter: bad_id", [c.avro("dataset", c.run_event("dataset", event_id="not-a-uuid"))])
    add("dead letter: missing_field", [c.avro("dataset", c.run_event("dataset", producer=""))])
    add("dead letter: time_future", [c.avro("dataset", c.run_event("dataset", time_us=NOW_US + 3600 * 1_000_000))])
    add("old event accepted by default", [c.avro("dataset", c.run_event("dataset", time_us=NOW_US - 5 * 365 * 86_400 * 1_000_000))])
    add("dead letter: time_past when a past limit is set",
        [c.avro("dataset", c.run_event("dataset", time_us=NOW_US - 500 * 86_400 * 1_000_000))],
        settings={"validation": {"max_past_days": 400}})
    add("dead letter: out_of_range", [c.avro("inference", c.inference(52, risk=1.5))], table=table7)
    add("dead letter: unsealed_pii", [c.avro("inference", c.inference(53), sealed=False)], table=table7)
    add("unsealed PII accepted while migrating", [c.avro("inference", c.inference(54), sealed=False)], table=table7,
        settings={"pii": {"accept_unsealed": True}})
    sealed_and_clear = seal_record(c.sealer, c.inference(55))
    sealed_and_clear["subject_id"] = "subject-1"
    add("dead letter: unsealed_pii beside a seal", [c.msg(t.event_topics["inference"], c.codec.encode("inference", sealed_and_clear))],
        table=table7)
    moved = seal_record(c.sealer, c.inference(56))
    moved["prediction_id"] = "p-moved"
    tampered = seal_record(c.sealer, c.inference(57))
    tampered["sealed"] = tampered["sealed"][:-6] + ("AAAAAA" if not tampered["sealed"].endswith("AAAAAA") else "BBBBBB")
    add("dead letter: unsealable", [c.msg(t.event_topics["inference"], c.codec.encode("inference", moved)),
                                    c.msg(t.event_topics["inference"], c.codec.encode("inference", tampered))], table=table7)
    add("dead letter: seal_key_unknown", [c.avro("inference", c.inference(58), stranger=True)], table=table7)
    add("dead letter: inference of an erased subject is not kept", [c.avro("inference", c.inference(59, risk=2.0, subject="erased-2"))],
        erased=["erased-2"])
    add("dead letter: internal_error isolates the one message", [
        c.avro("inference", c.inference(60, version="poison")),
        c.avro("inference", c.inference(61)),
    ], table=table7, poison=["credit@poison"])
    add("a mixed batch: good and bad interleaved", [
        c.avro("dataset", c.run_event("dataset")),
        c.msg(t.event_topics["dataset"], b"junk"),
        c.avro("inference", c.inference(70)),
        c.openlineage(b"{}"),
        c.avro("feature", c.run_event("feature"), confluent=True),
    ], table=table7)
    return out


def generate(vectors: list[Vector]) -> list[dict[str, Any]]:
    docs = []
    for v in vectors:
        v.expect = run_vector(v)
        docs.append(v.as_json())
    return docs


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.golden.event_path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="store_true",
                        help="build the inputs anew from the corpus (sealed inputs get fresh ciphertext); "
                             "default: keep the committed inputs and recompute only the expected outputs")
    args = parser.parse_args(argv)
    if args.rebuild or not VECTORS.exists():
        vectors = corpus()
    else:
        vectors = [Vector.from_json({**v, "expect": None}) for v in json.loads(VECTORS.read_text())["vectors"]]
    docs = generate(vectors)
    VECTORS.write_text(json.dumps({"now_s": NOW_S, "vectors": docs}, indent=1, sort_keys=True) + "\n")
    print(f"{len(docs)} vectors -> {VECTORS}")


if __name__ == "__main__":
    main()
