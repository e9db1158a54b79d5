"""Codec: both framings, round trips (hand-written and generated), errors, registry client."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage.schemas import SHIPPED_DIR
from lineage.codec import Codec, Decoded
from lineage.exceptions import DecodeError, EncodeError, SchemaError
from lineage.registry import RegistryError, SchemaRegistry
from lineage.schemas import EVENT_KINDS, SchemaRepo
from lineage.settings import Settings, TopicSettings

UTC = timezone.utc
T0 = 1_718_000_000_123_456  # 2024-06-10T06:13:20.123456Z in microseconds


def _utc(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


RUN_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
REALISTIC: dict[str, dict[str, Any]] = {
    "dataset": {
        "event_id": "0190a1b2-c3d4-7e5f-8a9b-000000000001",
        "correlation_id": None,
        "eventType": "COMPLETE",
        "eventTime": T0,
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.24.2/integration/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": RUN_ID,
            "parentRunId": "0190a1b2-0000-7000-8000-00000000dag1",
            "facets": {"nominalTime": '{"nominalStartTime": "2024-06-10T06:00:00Z"}'},
        },
        "job": {"namespace": "airflow-prod", "name": "etl.load_transactions", "facets": {}},
        "inputs": [
            {"namespace": "postgres://db.internal:5432", "name": "payments.public.transactions", "version": None, "facets": {}}
        ],
        "outputs": [
            {
                "namespace": "s3://lake-curated",
                "name": "transactions/dt=2024-06-10/part-0000.parquet",
                "version": "sha256:9f2c4e1d0b7a",
                "facets": {"schema": '{"fields": [{"name": "amount", "type": "DECIMAL(12,2)"}]}'},
            }
        ],
    },
    "feature": {
        "event_id": "0190a1b2-c3d4-7e5f-8a9b-000000000002",
        "correlation_id": "5d1b8c9e-2f3a-5b4c-9d8e-7f6a5b4c3d2e",
        "eventType": "START",
        "eventTime": T0 + 1_000,
        "producer": "https://github.com/acme/feature-pipelines/v3.2.0",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a60", "parentRunId": None, "facets": {}},
        "job": {"namespace": "features", "name": "credit_features.build", "facets": {}},
        "inputs": [
            {"namespace": "s3://lake-curated", "name": "transactions", "version": "sha256:9f2c4e1d0b7a", "facets": {}}
        ],
        "outputs": [{"namespace": "kafka://broker-1:9092", "name": "features.credit", "version": None, "facets": {}}],
        "feature_set": {
            "name": "credit_features",
            "version": "v12",
            "features": ["income", "utilization", "delinquencies_24m", "tenure_months"],
            "entity": "customer",
        },
    },
    "training": {
        "event_id": "0190a1b2-c3d4-7e5f-8a9b-000000000003",
        "correlation_id": "5d1b8c9e-2f3a-5b4c-9d8e-7f6a5b4c3d2e",
        "eventType": "COMPLETE",
        "eventTime": T0 + 3_600_000_000,
        "producer": "https://github.com/acme/model-training/v1.8.4",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a70", "parentRunId": None, "facets": {}},
        "job": {"namespace": "training", "name": "credit_risk.train", "facets": {}},
        "inputs": [{"namespace": "kafka://broker-1:9092", "name": "features.credit", "version": None, "facets": {}}],
        "outputs": [],
        "training": {
            "model_name": "credit_risk",
            "model_version": "17",
            "artifact_digest": "sha256:4be1c0ffee",
            "code_version": "3f9a2b7c1d",
            "feature_sets": [{"name": "credit_features", "version": "v12"}],
            "dataset_digests": {"s3://lake-curated/transactions": "sha256:9f2c4e1d0b7a"},
            "hyperparameters": {"max_depth": "6", "learning_rate": "0.05", "n_estimators": "400"},
            "metrics": {"auc": 0.874, "logloss": 0.312},
        },
    },
    "inference": {
        "event_id": "0190a1b2-c3d4-7e5f-8a9b-000000000004",
        "correlation_id": None,
        "event_time": T0 + 86_400_000_000,
        "producer": "https://github.com/acme/scoring-service/v2.3.1",
        "endpoint": "credit-limit",
        "model_name": "credit_risk",
        "model_version": "17",
        "prediction_id": "pred-0190a1b2-c3d4-7e5f",
        "decision_type": "deny",
        "risk_score": 0.9134,
        "regulatory_class": "credit",
        "subject_id": "cust-884213",
        "training_run_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a70",
        "feature_snapshot": {
            "feature_set": {"name": "credit_features", "version": "v12"},
            "values": {"income": "84000", "utilization": "0.91", "delinquencies_24m": "2", "region": '"EU-W"'},
        },
        "sealed": None,
    },
}
TIME_FIELD = {"dataset": "eventTime", "feature": "eventTime", "training": "eventTime", "inference": "event_time"}


def _as_decoded(kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """What decode returns for ``record``: timestamps come back as aware UTC datetimes."""
    out = dict(record)
    if isinstance(out[TIME_FIELD[kind]], int):
        out[TIME_FIELD[kind]] = _utc(out[TIME_FIELD[kind]])
    return out


# --- in-process Schema Registry (the registry is an external service; two endpoints suffice) --


class FakeRegistry:
    """State of a minimal Confluent Schema Registry."""

    def __init__(self) -> None:
        self.schemas: list[str] = []  # id = index + 1
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth: list[str | None] = []
        self.fail_with: int | None = None

    def register(self, subject: str, schema: str) -> int:
        canonical = json.dumps(json.loads(schema), sort_keys=True)
        existing = [i for i, s in enumerate(self.schemas, 1) if json.dumps(json.loads(s), sort_keys=True) == canonical]
        if existing:
            schema_id = existing[0]
        else:
            self.schemas.append(schema)
            schema_id = len(self.schemas)
        ids = self.subjects.setdefault(subject, [])
        if schema_id not in ids:
            ids.append(schema_id)
        return schema_id


@pytest.fixture
def registry_server() -> Iterator[tuple[str, FakeRegistry]]:
    state = FakeRegistry()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _pre(self) -> bool:
            state.requests.append((self.command, self.path))
            state.auth.append(self.headers.get("Authorization"))
            if state.fail_with is not None:
                self._reply(state.fail_with, {"error_code": state.fail_with * 100, "message": "boom"})
                return False
            return True

        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            if not self._pre():
                return
            m = re.fullmatch(r"/subjects/([^/]+)/versions", self.path)
            if m is None:
                self._reply(404, {"error_code": 404, "message": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._reply(200, {"id": state.register(m[1], body["schema"])})

        def do_GET(self) -> None:  # noqa: N802
            if not self._pre():
                return
            m = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
            if m is None or not 1 <= int(m[1]) <= len(state.schemas):
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                return
            self._reply(200, {"schema": state.schemas[int(m[1]) - 1]})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- single-object framing ----------------------------------------------------------------


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_single_object_round_trip(codec: Codec, kind: str) -> None:
    data = codec.encode(kind, REALISTIC[kind])
    latest = codec.repo.latest(kind)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == latest.fingerprint
    decoded = codec.decode(data)
    assert decoded == Decoded(kind, _as_decoded(kind, REALISTIC[kind]), latest.version, "single-object")


def test_datetimes_encode_like_micros(codec: Codec) -> None:
    as_dt = dict(REALISTIC["inference"], event_time=_utc(REALISTIC["inference"]["event_time"]))
    assert codec.encode("inference", as_dt) == codec.encode("inference", REALISTIC["inference"])


def test_defaults_fill_omitted_optional_fields(codec: Codec) -> None:
    minimal = {k: v for k, v in REALISTIC["dataset"].items() if k in ("event_id", "eventType", "eventTime", "producer")}
    minimal["run"] = {"runId": RUN_ID}
    minimal["job"] = {"namespace": "ns", "name": "job"}
    record = codec.decode(codec.encode("dataset", minimal)).record
    assert record["correlation_id"] is None
    assert record["schemaURL"].startswith("https://openlineage.io/spec/2-0-2/")
    assert record["run"] == {"runId": RUN_ID, "parentRunId": None, "facets": {}}
    assert record["inputs"] == [] and record["outputs"] == []


def test_inference_without_snapshot(codec: Codec) -> None:
    record = dict(REALISTIC["inference"], feature_snapshot=None, regulatory_class=None, decision_type="approve")
    assert codec.decode(codec.encode("inference", record)).record == _as_decoded("inference", record)


# --- encode errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"risk_score": "high"}, "risk_score"),
        ({"model_name": None}, "model_name"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"feature_snapshot": {"values": {"income": 84000}}}, "feature_snapshot.values[income]"),
        ({"feature_snapshot": {"feature_set": {"name": "f"}, "values": {}}}, "feature_snapshot.feature_set.version"),
        ({"subject": "typo"}, "subject"),
    ],
)
def test_invalid_record_names_the_field(codec: Codec, change: dict[str, Any], field: str) -> None:
    with pytest.raises(EncodeError, match=re.escape(field)):
        codec.encode("inference", {**REALISTIC["inference"], **change})


def test_missing_required_field(codec: Codec) -> None:
    record = {k: v for k, v in REALISTIC["inference"].items() if k != "prediction_id"}
    with pytest.raises(EncodeError, match="prediction_id: required field missing"):
        codec.encode("inference", record)


def test_bad_enum_symbol_and_non_mapping(codec: Codec) -> None:
    with pytest.raises(EncodeError, match="eventType"):
        codec.encode("training", dict(REALISTIC["training"], eventType="DONE"))
    with pytest.raises(EncodeError, match="record"):
        codec.encode("training", ["not", "a", "record"])  # type: ignore[arg-type]


def test_unknown_kind_is_a_schema_error(codec: Codec) -> None:
    with pytest.raises(SchemaError):
        codec.encode("payment", {})


# --- decode errors ------------------------------------------------------------------------


def _reason(codec: Codec, data: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert info.value.raw == data
    assert info.value.reason in str(info.value)
    return info.value.reason


def test_decode_error_reasons(codec: Codec) -> None:
    good = codec.encode("inference", REALISTIC["inference"])
    assert _reason(codec, b"") == "empty"
    assert _reason(codec, b"{\"event_id\": 1}") == "bad_magic"
    assert _reason(codec, b"\xc3\x02" + good[2:]) == "bad_magic"
    assert _reason(codec, b"\xc3") == "truncated"
    assert _reason(codec, good[:7]) == "truncated"
    assert _reason(codec, b"\x00\x00\x01") == "truncated"
    assert _reason(codec, good[:-5]) == "truncated"  # body cut short
    assert _reason(codec, b"\xc3\x01" + b"\x01" * 8 + good[10:]) == "unknown_schema"
    assert _reason(codec, b"\x00\x00\x00\x00\x07" + good[10:]) == "unknown_schema"  # no registry
    assert _reason(codec, good + b"\x00") == "undecodable"  # trailing bytes
    assert _reason(codec, good[:10] + b"\x02\xff" + good[12:]) == "undecodable"  # invalid UTF-8
    dataset = codec.encode("dataset", REALISTIC["dataset"])
    assert _reason(codec, good[:10] + dataset[10:]) in ("truncated", "undecodable")  # wrong kind's body


def test_garbage_bodies_never_escape_as_other_errors(codec: Codec) -> None:
    header = codec.encode("dataset", REALISTIC["dataset"])[:10]
    for n in range(200):
        body = bytes((n * 37 + i * 101) % 256 for i in range(n % 40))
        try:
            codec.decode(header + body)
        except DecodeError as exc:
            assert exc.reason in ("truncated", "undecodable")


# --- schema evolution ---------------------------------------------------------------------


V1_INFERENCE = {k: v for k, v in REALISTIC["inference"].items() if k != "sealed"}


def _evolved_dir(tmp_path: Path, with_v2: bool) -> Path:
    d = tmp_path / ("v2" if with_v2 else "v1")
    d.mkdir()
    shutil.copy(SHIPPED_DIR / "inference_event.v1.avsc", d)
    if with_v2:
        raw = json.loads((d / "inference_event.v1.avsc").read_text())
        raw["fields"].append(
            {"name": "explanation_uri", "type": ["null", "string"], "default": None, "doc": "SHAP report, if any."}
        )
        (d / "inference_event.v2.avsc").write_text(json.dumps(raw))
    return d


def test_old_writer_resolves_to_new_reader(tmp_path: Path) -> None:
    # The evolution is built from the first shipped version, which has no ``sealed`` field.
    old = Codec(SchemaRepo.load(_evolved_dir(tmp_path, False)))
    new = Codec(SchemaRepo.load(_evolved_dir(tmp_path, True)))
    decoded = new.decode(old.encode("inference", V1_INFERENCE))
    assert decoded.version == 1
    assert decoded.record == {**_as_decoded("inference", V1_INFERENCE), "explanation_uri": None}
    written = new.encode("inference", {**V1_INFERENCE, "explanation_uri": "s3://x/shap.json"})
    assert new.decode(written).version == 2
    assert new.decode(written).record["explanation_uri"] == "s3://x/shap.json"
    # Single-object framing can only name shipped schemas: roll readers out before writers.
    with pytest.raises(DecodeError) as info:
        old.decode(written)
    assert info.value.reason == "unknown_schema"


# --- generated records --------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=20)


def _strategy(t: Any, named: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Hypothesis strategy for values of a parsed Avro type that decode back equal."""
    if isinstance(t, list):
        return st.one_of([_strategy(b, named) for b in t])
    if isinstance(t, str):
        if t in named:
            return _strategy(named[t], named)
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=20),
            "string": _text,
        }[t]
    if t.get("logicalType") == "timestamp-micros":
        return st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
    kind = t["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: _strategy(f["type"], named) for f in t["fields"]})
    if kind == "enum":
        return st.sampled_from(t["symbols"])
    if kind == "array":
        return st.lists(_strategy(t["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(_text, _strategy(t["values"], named), max_size=3)
    return _strategy(kind, named)


def _records(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    parsed = SchemaRepo.load().latest(kind).parsed
    return _strategy(parsed, parsed["__named_schemas"])  # type: ignore[return-value]


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_generated_records_round_trip(codec: Codec, kind: str) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(record=_records(kind))
    def check(record: dict[str, Any]) -> None:
        decoded = codec.decode(codec.encode(kind, record))
        assert decoded.kind == kind
        assert decoded.record == record

    check()


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_generated_records_round_trip_confluent(registry_server: tuple[str, FakeRegistry], kind: str) -> None:
    url, _ = registry_server
    writer = Codec(registry=SchemaRegistry(url))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(record=_records(kind))
    def check(record: dict[str, Any]) -> None:
        decoded = writer.decode(writer.encode(kind, record))
        assert (decoded.kind, decoded.framing, decoded.record) == (kind, "confluent", record)

    check()


# --- Confluent framing + registry ---------------------------------------------------------


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_confluent_round_trip_through_a_fresh_reader(registry_server: tuple[str, FakeRegistry], kind: str) -> None:
    url, state = registry_server
    writer = Codec(registry=SchemaRegistry(url), topic_prefix="tenant1")
    data = writer.encode(kind, REALISTIC[kind])
    schema_id = int.from_bytes(data[1:5], "big")
    assert data[0] == 0 and schema_id >= 1
    assert state.subjects[f"tenant1.{kind}-value"] == [schema_id]
    assert json.loads(state.schemas[schema_id - 1]) == SchemaRepo.load().latest(kind).raw

    reader = Codec(registry=SchemaRegistry(url))
    before = len(state.requests)
    expected = Decoded(kind, _as_decoded(kind, REALISTIC[kind]), SchemaRepo.load().latest(kind).version, "confluent")
    assert reader.decode(data) == expected
    assert reader.decode(data) == expected
    assert state.requests[before:] == [("GET", f"/schemas/ids/{schema_id}")]  # fetched once, then cached


def test_registration_happens_once(registry_server: tuple[str, FakeRegistry]) -> None:
    url, state = registry_server
    codec = Codec(registry=SchemaRegistry(url))
    for _ in range(5):
        codec.encode("inference", REALISTIC["inference"])
    assert state.requests == [("POST", "/subjects/lineage.inference-value/versions")]
    codec.decode(codec.encode("inference", REALISTIC["inference"]))
    assert len(state.requests) == 1  # the writer knows its own id


def test_warm_up_registers_every_kind(registry_server: tuple[str, FakeRegistry]) -> None:
    url, state = registry_server
    codec = Codec(registry=SchemaRegistry(url))
    codec.warm_up()
    assert sorted(state.subjects) == sorted(f"lineage.{k}-value" for k in EVENT_KINDS)
    codec.warm_up()
    for kind in EVENT_KINDS:
        codec.encode(kind, REALISTIC[kind])
    assert len(state.requests) == len(EVENT_KINDS)
    Codec().warm_up()  # without a registry there is nothing to do


def test_registry_codec_reads_single_object_and_plain_codec_rejects_confluent(
    registry_server: tuple[str, FakeRegistry], codec: Codec
) -> None:
    url, _ = registry_server
    with_registry = Codec(registry=SchemaRegistry(url))
    single = codec.encode("feature", REALISTIC["feature"])
    assert with_registry.decode(single).framing == "single-object"
    confluent = with_registry.encode("feature", REALISTIC["feature"])
    with pytest.raises(DecodeError) as info:
        codec.decode(confluent)
    assert info.value.reason == "unknown_schema" and info.value.raw == confluent


def test_unknown_id_and_foreign_schema(registry_server: tuple[str, FakeRegistry]) -> None:
    url, state = registry_server
    codec = Codec(registry=SchemaRegistry(url))
    body = Codec().encode("inference", REALISTIC["inference"])[10:]
    assert _reason(codec, b"\x00\x00\x00\x03\xe7" + body) == "unknown_schema"
    foreign = {"type": "record", "name": "Payment", "namespace": "acme", "fields": [{"name": "id", "type": "string"}]}
    foreign_id = SchemaRegistry(url).register("payments-value", foreign)
    assert _reason(codec, b"\x00" + foreign_id.to_bytes(4, "big") + b"\x02a") == "unknown_schema"
    state.schemas.append(json.dumps("string"))
    assert _reason(codec, b"\x00" + len(state.schemas).to_bytes(4, "big") + b"\x02a") == "unknown_schema"


def test_newer_writer_from_the_registry_resolves_to_shipped_reader(registry_server: tuple[str, FakeRegistry]) -> None:
    url, _ = registry_server
    raw = dict(SchemaRepo.load().latest("inference").raw)
    raw["fields"] = raw["fields"] + [{"name": "latency_ms", "type": "double", "default": 0.0, "doc": "Serving latency."}]
    new_id = SchemaRegistry(url).register("lineage.inference-value", raw)
    # What a newer producer writes: the new schema's body under its registry id.
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw, named_schemas={}), {**REALISTIC["inference"], "latency_ms": 3.5})
    decoded = Codec(registry=SchemaRegistry(url)).decode(b"\x00" + new_id.to_bytes(4, "big") + buf.getvalue())
    assert decoded.version == 0  # not a shipped version
    assert decoded.record == _as_decoded("inference", REALISTIC["inference"])  # the unknown field is dropped


def test_registry_http_errors_are_schema_errors(registry_server: tuple[str, FakeRegistry]) -> None:
    url, state = registry_server
    state.fail_with = 500
    codec = Codec(registry=SchemaRegistry(url))
    with pytest.raises(SchemaError, match="HTTP 500: boom"):
        codec.encode("inference", REALISTIC["inference"])
    with pytest.raises(RegistryError) as info:
        codec.decode(b"\x00\x00\x00\x00\x01\x02a")  # registry trouble is not the message's fault
    assert not isinstance(info.value, DecodeError) and info.value.status == 500
    state.fail_with = None
    assert codec.encode("inference", REALISTIC["inference"])[0] == 0  # recovers once the registry does


def test_unreachable_registry() -> None:
    codec = Codec(registry=SchemaRegistry("http://127.0.0.1:9", timeout=2))
    with pytest.raises(SchemaError, match="unreachable"):
        codec.encode("dataset", REALISTIC["dataset"])


def test_registry_url_validation_and_basic_auth(registry_server: tuple[str, FakeRegistry]) -> None:
    url, state = registry_server
    with pytest.raises(SchemaError):
        SchemaRegistry("ftp://example.org")
    client = SchemaRegistry(url.replace("http://", "http://svc:s%40cret@"))
    assert "s%40cret" not in client.url and "svc" not in repr(client)
    schema_id = client.register("x-value", {"type": "record", "name": "X", "fields": []})
    assert state.auth[-1] == "Basic " + base64.b64encode(b"svc:s@cret").decode()
    assert client.schema_by_id(schema_id) == {"type": "record", "name": "X", "fields": []}
    assert SchemaRegistry(url).schema_by_id(schema_id)["name"] == "X"


def test_from_settings(registry_server: tuple[str, FakeRegistry]) -> None:
    url, _ = registry_server
    plain = Codec.from_settings(Settings())
    assert plain.registry is None
    assert plain.encode("dataset", REALISTIC["dataset"])[:2] == b"\xc3\x01"
    configured = Codec.from_settings(Settings(schema_registry_url=url, topics=TopicSettings(prefix="t9")))
    assert configured.registry is not None and configured.subject("dataset") == "t9.dataset-value"
    assert configured.encode("dataset", REALISTIC["dataset"])[0] == 0
