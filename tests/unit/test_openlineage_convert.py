"""OpenLineage RunEvent JSON -> project records: classification, fields, deterministic ids, clear errors."""
from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import ol_dataset, openlineage_client_event, openlineage_event
from lineage.codec import Codec
from producers.exceptions import OpenLineageError
from producers.openlineage import from_openlineage, to_dict

RUN_ID = "0190c3a2-1111-7000-8000-000000000001"


def base(**extra: Any) -> dict[str, Any]:
    """An Airflow task's COMPLETE: a parent run, a versioned input with input facets, a local-time eventTime."""
    parent = {"run": {"runId": "0190c3a2-1111-7000-8000-0000000000ff"}, "job": {"namespace": "airflow", "name": "dag"}}
    return openlineage_event(
        "COMPLETE", RUN_ID, event_time="2026-06-15T10:00:00.123456+02:00", job=("airflow", "dag.orders"),
        producer="https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/airflow",
        run_facets={"parent": parent},
        inputs=[ol_dataset("postgres://db:5432", "shop.public.orders", "v9", inputFacets={"stats": {"rows": 3}})],
        outputs=[ol_dataset("s3://lake", "orders/2026-06-15")],
        schemaURL="https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent", **extra,
    )


def test_dataset_event() -> None:
    kind, rec = from_openlineage(base())
    assert kind == "dataset"
    assert rec["eventTime"] == 1_781_510_400_123_456  # 08:00:00.123456 UTC
    assert rec["run"]["parentRunId"] == "0190c3a2-1111-7000-8000-0000000000ff"
    assert rec["inputs"][0]["version"] == "v9"
    assert json.loads(rec["inputs"][0]["facets"]["stats"]) == {"rows": 3}
    assert uuid.UUID(rec["event_id"]).version == 7
    Codec().encode(kind, rec)


def test_event_id_is_deterministic_and_distinguishes_transitions() -> None:
    a, b = from_openlineage(base())[1], from_openlineage(copy.deepcopy(base()))[1]
    assert a["event_id"] == b["event_id"]
    assert from_openlineage(base(eventType="START"))[1]["event_id"] != a["event_id"]


@pytest.mark.parametrize(
    "facets,job_facets,kind",
    [
        ({"lineage": {"class": "training"}, "training": {"model_name": "m", "model_version": "1"}}, {}, "training"),
        ({"training": {"model_name": "m", "model_version": "1", "code_version": "abc"}}, {}, "training"),
        ({"feature_set": {"name": "fs", "version": 3, "features": ["a"]}}, {}, "feature"),
        ({"feature_set": {"name": "fs", "version": "3"}}, {"jobType": {"jobType": "FEATURE", "processingType": "BATCH"}}, "feature"),
        ({}, {}, "dataset"),
    ],
)
def test_classification(facets: dict[str, Any], job_facets: dict[str, Any], kind: str) -> None:
    ev = base()
    ev["run"]["facets"].update(facets)
    ev["job"]["facets"] = job_facets
    got, rec = from_openlineage(ev)
    assert got == kind
    Codec().encode(got, rec)


def test_inference_from_facet() -> None:
    ev = base()
    ev["run"]["facets"]["inference"] = {
        "_producer": "x", "_schemaURL": "y", "model_name": "fraud", "model_version": "12", "prediction_id": "p1",
        "decision_type": "deny", "risk_score": 0.93, "subject_id": "cust-1",
        "feature_snapshot": {"feature_set": {"name": "fs", "version": "7"}, "values": {"amount": 12.5}},
    }
    kind, rec = from_openlineage(ev)
    assert kind == "inference"
    assert rec["endpoint"] == "dag.orders" and rec["feature_snapshot"]["values"] == {"amount": "12.5"}
    Codec().encode(kind, rec)


def test_openlineage_python_objects_convert() -> None:
    ev = openlineage_client_event(RUN_ID, "START", source=("s3://lake", "raw"), target=None, job=("spark", "etl"))
    kind, rec = from_openlineage(to_dict(ev))
    assert kind == "dataset" and rec["eventType"] == "START" and rec["inputs"][0]["name"] == "raw"
    Codec().encode(kind, rec)


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda e: (e.pop("run"), e.pop("job")), "not_a_run_event"),
        (lambda e: e["run"].update(runId="not-a-uuid"), "invalid_field"),
        (lambda e: e.update(eventType="DONE"), "invalid_field"),
        (lambda e: e.update(eventTime="yesterday"), "invalid_field"),
        (lambda e: e.pop("eventTime"), "missing_field"),
        (lambda e: e.pop("producer"), "missing_field"),
        (lambda e: e["job"].pop("name"), "missing_field"),
        (lambda e: e.update(inputs={"a": 1}), "invalid_field"),
        (lambda e: e["outputs"][0].pop("namespace"), "missing_field"),
        (lambda e: e["run"]["facets"].update(training={"model_name": "m"}), "missing_facet_field"),
        (lambda e: e["run"]["facets"].update(lineage={"class": "bogus"}), "invalid_facet"),
        (lambda e: e["run"]["facets"].update(inference={"model_name": "m"}), "missing_facet_field"),
    ],
)
def test_invalid_events_have_a_reason(mutate: Any, reason: str) -> None:
    ev = base()
    mutate(ev)
    with pytest.raises(OpenLineageError) as info:
        from_openlineage(ev)
    assert info.value.reason == reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["run", "job", "eventType", "eventTime", "producer", "inputs", "outputs"]),
                       json_values, max_size=7))
def test_garbage_only_ever_raises_openlineage_error(obj: dict[str, Any]) -> None:
    try:
        kind, rec = from_openlineage(obj)
    except OpenLineageError:
        return
    Codec().encode(kind, rec)  # whatever is accepted must fit the schema


# --- static lineage (DatasetEvent, JobEvent) -------------------------------------------------

def _corpus(name: str) -> dict[str, Any]:
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parents[1] / "data" / "openlineage" / f"{name}.json").read_text())


def test_a_dataset_event_is_stored_as_its_dataset_and_facets() -> None:
    from lineage.graph import build_record

    kind, rec = from_openlineage(_corpus("static_dataset_event"))
    assert kind == "dataset" and rec["eventType"] == "OTHER"
    graph = build_record(kind, rec, "c")
    assert graph.event_type == "DatasetEvent" and graph.edges == []
    (node,) = graph.nodes
    assert (node.node_id, node.version) == ("dataset:snowflake://acme-xy12345/ANALYTICS.MARTS.CUSTOMER_LTV", "2021-04-12")
    assert node.attributes["owners"] == "team:growth-analytics" and node.attributes["tags"] == "pii=false,tier=gold"
    assert node.attributes["schema"] == '[["CUSTOMER_ID","NUMBER"],["LTV_USD","NUMBER(18,2)"]]'


def test_a_job_event_declares_static_edges_told_apart_from_run_edges() -> None:
    from lineage.graph import build_record

    ev = _corpus("static_job_event")
    kind, rec = from_openlineage(ev)
    graph = build_record(kind, rec, "c")
    job = "job:dbt-prod/analytics.marts.customer_ltv"
    sf = "dataset:snowflake://acme-xy12345/ANALYTICS."
    assert {(e.src, e.dst, e.edge_type, e.run_id) for e in graph.edges} == {
        (f"{sf}STAGING.ORDERS", job, "declared_input", ""),
        (f"{sf}STAGING.REFUNDS", job, "declared_input", ""),
        (job, f"{sf}MARTS.CUSTOMER_LTV", "declared_output", ""),
    }
    assert not [n for n in graph.nodes if n.node_type == "run"]
    # the same statement again deduplicates; a changed one is a new statement
    assert from_openlineage(ev)[1]["event_id"] == rec["event_id"]
    ev["outputs"].append({"namespace": "snowflake://acme-xy12345", "name": "ANALYTICS.MARTS.CUSTOMER_LTV_V2"})
    assert from_openlineage(ev)[1]["event_id"] != rec["event_id"]
    assert from_openlineage(ev)[1]["run"]["runId"] == rec["run"]["runId"]  # one stable id per job


def test_static_events_need_a_producer_and_a_time() -> None:
    for name in ("static_dataset_event", "static_job_event"):
        for field in ("producer", "eventTime"):
            ev = _corpus(name)
            del ev[field]
            with pytest.raises(OpenLineageError):
                from_openlineage(ev)
