"""The typed builders match the Avro contract field for field, and each class encodes through the codec."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from factories import sdk_event
from lineage.codec import Codec
from lineage.schemas import EVENT_KINDS, SchemaRepo
from producers import events as ev
from producers.records import normalize, partition_key


def _records(t: Any, named: dict[str, Any], found: dict[str, dict[str, Any]]) -> None:
    if isinstance(t, list):
        for b in t:
            _records(b, named, found)
    elif isinstance(t, str):
        if t in named and t.rsplit(".", 1)[-1] not in found:
            _records(named[t], named, found)
    elif isinstance(t, dict):
        if t.get("type") == "record":
            found[t["name"].rsplit(".", 1)[-1]] = t
            for f in t["fields"]:
                _records(f["type"], named, found)
        for key in ("items", "values"):
            if key in t:
                _records(t[key], named, found)


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_typed_classes_match_latest_schema(kind: str) -> None:
    parsed = SchemaRepo.load().latest(kind).parsed
    found: dict[str, dict[str, Any]] = {}
    _records(parsed, parsed.get("__named_schemas", {}), found)
    assert ev.EVENT_CLASSES[kind].KIND == kind
    for name, record in found.items():
        cls = ev.RECORD_CLASSES[name]
        fields = {f.name for f in dataclasses.fields(cls)}
        avro = {f["name"] for f in record["fields"]}
        assert fields == avro, f"{cls.__name__} differs from Avro record {name}"
        required = {f["name"] for f in record["fields"] if "default" not in f}
        no_default = {
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        # what the schema requires and the SDK does not stamp, the builder requires
        assert no_default <= required, f"{cls.__name__} requires fields the schema defaults"


def samples() -> list[ev.DatasetEvent | ev.FeatureEvent | ev.TrainingEvent | ev.InferenceEvent]:
    """One event per class sharing a run, with the values the encoding must convert: a datetime,
    a schema facet, numeric hyperparameters, an int risk score, non-string snapshot values."""
    run = ev.Run("0190c3a2-0000-7000-8000-000000000001", facets={"nominalTime": {"nominalStartTime": "2026-06-15T00:00:00Z"}})
    job = ev.Job("etl", "orders_daily")
    src = ev.Dataset("postgres://db:5432", "shop.public.orders", facets={"schema": {"fields": []}})
    return [
        sdk_event("dataset", run=run, job=job, inputs=[src], eventTime=datetime(2026, 6, 15, tzinfo=timezone.utc)),
        sdk_event("feature", eventType="START", run=run, job=job),
        sdk_event("training", run=run, job=job, producer="https://x/train",
                  training=ev.Training("fraud", "12", "abc123", "sha256:ff", [ev.FeatureSetRef("fraud", "7")],
                                       {"s3://lake/orders": "sha256:ab"}, {"lr": 0.1, "depth": 6}, {"auc": 1})),
        sdk_event("inference", risk_score=1, regulatory_class=None,
                  feature_snapshot=ev.FeatureSnapshot({"amount": 12.5, "country": "DE"}, ev.FeatureSetRef("fraud", "7"))),
    ]


@pytest.mark.parametrize("event", samples(), ids=lambda e: e.KIND)
def test_typed_event_encodes_and_decodes(event: Any) -> None:
    codec = Codec()
    event.event_id = "0190c3a2-0000-7000-8000-0000000000aa"
    rec = normalize(event.KIND, orjson.loads(orjson.dumps(event)), typed=True)
    decoded = codec.decode(codec.encode(event.KIND, rec))
    assert decoded.kind == event.KIND
    assert decoded.record["event_id"] == event.event_id
    if event.KIND == "inference":
        assert decoded.record["feature_snapshot"]["values"] == {"amount": "12.5", "country": '"DE"'}
        assert partition_key("inference", rec) == "fraud@12"
    else:  # keyed by job, as OpenLineage clients key run events
        assert partition_key(event.KIND, rec) == f"run:{event.job.namespace}/{event.job.name}"
    if event.KIND == "dataset":
        assert decoded.record["inputs"][0]["facets"]["schema"] == '{"fields":[]}'
    if event.KIND == "training":
        assert decoded.record["training"]["hyperparameters"] == {"lr": "0.1", "depth": "6"}


@pytest.mark.parametrize(
    ("parent", "key"),
    [
        (None, "run:spark/etl.orders"),
        ({"run": {"runId": "r-1"}, "job": {"namespace": "airflow", "name": "dag.task"}}, "run:airflow/dag.task"),
        ({"run": {"runId": "r-1"}, "job": {"namespace": "airflow", "name": "dag.task"},
          "root": {"run": {"runId": "r-0"}, "job": {"namespace": "airflow", "name": "dag"}}}, "run:airflow/dag"),
    ],
)
def test_run_events_are_keyed_by_their_root_job(parent: Any, key: str) -> None:
    facets = {} if parent is None else {"parent": orjson.dumps(parent).decode()}  # records carry facets as JSON text
    rec = {"run": {"runId": "r-2", "facets": facets}, "job": {"namespace": "spark", "name": "etl.orders"}}
    assert partition_key("dataset", rec) == key
    rec["run"]["facets"] = {} if parent is None else {"parent": parent}  # typed events: dicts
    assert partition_key("dataset", rec) == key


def test_static_events_are_keyed_by_what_they_describe() -> None:
    from producers.openlineage import from_openlineage

    for event, key in (
        ({"eventTime": "2026-01-01T00:00:00Z", "producer": "p", "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
          "dataset": {"namespace": "hive", "name": "db.orders"}}, "dataset:hive/db.orders"),
        ({"eventTime": "2026-01-01T00:00:00Z", "producer": "p", "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
          "job": {"namespace": "dbt", "name": "orders_model"}, "inputs": [], "outputs": []}, "job:dbt/orders_model"),
    ):
        kind, rec = from_openlineage(event)
        assert partition_key(kind, rec) == key
