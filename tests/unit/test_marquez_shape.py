"""The Marquez-compatible reads' pure logic: node ids, parameters, and the graph documents built
from query rows, checked against hand-written documents in Marquez's shape."""
from datetime import datetime, timezone

import pytest

from sinks.access.http import PUBLIC, rule_for
from sinks.access.roles import Action
from sinks.marquez import (
    NodeIdError,
    NodeRef,
    column_document,
    lineage_document,
    parse_depth,
    parse_field_id,
    parse_flag,
    parse_node_id,
)


def test_parse_node_id_keeps_colons_in_namespace() -> None:
    assert parse_node_id("dataset:postgres://crm:5432:public.customers") == NodeRef(
        "dataset", "postgres://crm:5432", "public.customers")
    assert parse_node_id("job:etl:daily") == NodeRef("job", "etl", "daily")
    assert NodeRef("dataset", "postgres://crm:5432", "public.customers").graph_id == \
        "dataset:postgres://crm:5432/public.customers"
    assert NodeRef("job", "etl", "daily").graph_id == "job:etl/daily"


@pytest.mark.parametrize("bad", ["", "run:x:y", "dataset:", "dataset:onlyname", "job::name", "dataset:ns:",
                                 "datasetField:ns:name:c"])
def test_parse_node_id_refuses(bad: str) -> None:
    with pytest.raises(NodeIdError):
        parse_node_id(bad)


def test_parse_field_id() -> None:
    assert parse_field_id("datasetField:hdfs://nn:8020:/w/orders:amount") == (
        NodeRef("dataset", "hdfs://nn:8020", "/w/orders"), "amount")
    assert parse_field_id("dataset:pg:raw") == (NodeRef("dataset", "pg", "raw"), "")
    for bad in ("datasetField:pg:raw:", "datasetField:onlyname:c", "job:etl:x"):
        with pytest.raises(NodeIdError):
            parse_field_id(bad)


def test_depth_and_flag() -> None:
    assert parse_depth(None) == 20 and parse_depth("") == 20 and parse_depth("0") == 0 and parse_depth("100") == 100
    for bad in ("-1", "101", "x", "1.5"):
        with pytest.raises(NodeIdError):
            parse_depth(bad)
    assert parse_flag("true", "f") is True and parse_flag("FALSE", "f") is False and parse_flag(None, "f") is False
    with pytest.raises(NodeIdError, match="withDownstream"):
        parse_flag("yes", "withDownstream")


def _row(node_id: str, kind: str, ns: str, name: str, inputs: list[str], outputs: list[str],
         attributes: dict[str, str] | None = None, version: str = "") -> dict[str, object]:
    return {"node_id": node_id, "node_type": kind, "namespace": ns, "name": name, "version": version,
            "attributes": attributes or {}, "updated_at": datetime(2024, 3, 4, 1, 2, 3, 500000, tzinfo=timezone.utc),
            "depth": 0, "inputs": inputs, "outputs": outputs, "processing_type": ""}


def test_lineage_document_matches_hand_written_marquez_graph() -> None:
    rows = [
        _row("job:etl/clean", "job", "etl", "clean", ["dataset:pg/raw"], ["dataset:pg/clean"]),
        _row("dataset:pg/raw", "dataset", "pg", "raw", [], ["job:etl/clean"],
             {"schema": '[["id","bigint"]]', "tags": "pii=false", "symlinks": '["dataset:hive://m:9083/db.raw"]'}, "v7"),
        _row("dataset:pg/clean", "dataset", "pg", "clean", ["job:etl/clean"], []),
    ]
    at = "2024-03-04T01:02:03.500000Z"
    assert lineage_document(rows) == {"graph": [
        {"id": "dataset:pg:clean", "type": "DATASET",
         "data": {"id": {"namespace": "pg", "name": "clean"}, "name": "clean", "namespace": "pg", "updatedAt": at,
                  "type": "DB_TABLE", "physicalName": "clean", "sourceName": "pg", "fields": [], "tags": [],
                  "currentVersion": None, "symlinks": []},
         "inEdges": [{"origin": "job:etl:clean", "destination": "dataset:pg:clean"}], "outEdges": []},
        {"id": "dataset:pg:raw", "type": "DATASET",
         "data": {"id": {"namespace": "pg", "name": "raw"}, "name": "raw", "namespace": "pg", "updatedAt": at,
                  "type": "DB_TABLE", "physicalName": "raw", "sourceName": "pg",
                  "fields": [{"name": "id", "type": "bigint", "tags": [], "description": None}],
                  "tags": ["pii=false"], "currentVersion": "v7", "symlinks": ["dataset:hive://m:9083/db.raw"]},
         "inEdges": [], "outEdges": [{"origin": "dataset:pg:raw", "destination": "job:etl:clean"}]},
        {"id": "job:etl:clean", "type": "JOB",
         "data": {"id": {"namespace": "etl", "name": "clean"}, "name": "clean", "namespace": "etl", "updatedAt": at,
                  "type": "BATCH", "simpleName": "clean", "inputs": [{"namespace": "pg", "name": "raw"}],
                  "outputs": [{"namespace": "pg", "name": "clean"}]},
         "inEdges": [{"origin": "dataset:pg:raw", "destination": "job:etl:clean"}],
         "outEdges": [{"origin": "job:etl:clean", "destination": "dataset:pg:clean"}]},
    ]}


def _hop(ns: str, ds: str, col: str, via_ds: str, via_col: str, ttype: str, sub: str) -> dict[str, object]:
    return {"namespace": ns, "dataset": ds, "column": col, "via_namespace": ns, "via_dataset": via_ds,
            "via_column": via_col, "transformation_type": ttype, "subtype": sub, "masking": 0}


def test_column_document_matches_hand_written_marquez_graph() -> None:
    start = (NodeRef("dataset", "pg", "sum"), "total")
    up = [_hop("pg", "orders", "amount", "sum", "total", "DIRECT", "AGGREGATION")]
    down = [_hop("pg", "report", "avg", "sum", "total", "DIRECT", "TRANSFORMATION")]
    amount, total, avg = "datasetField:pg:orders:amount", "datasetField:pg:sum:total", "datasetField:pg:report:avg"
    assert column_document(start, up, down) == {"graph": [
        {"id": amount, "type": "DATASET_FIELD",
         "data": {"namespace": "pg", "dataset": "orders", "field": "amount", "fieldType": None,
                  "transformationDescription": None, "transformationType": None, "inputFields": []},
         "inEdges": [], "outEdges": [{"origin": amount, "destination": total}]},
        {"id": avg, "type": "DATASET_FIELD",
         "data": {"namespace": "pg", "dataset": "report", "field": "avg", "fieldType": None,
                  "transformationDescription": None, "transformationType": "DIRECT",
                  "inputFields": [{"namespace": "pg", "dataset": "sum", "field": "total",
                                   "transformationDescription": None, "transformationType": "DIRECT",
                                   "transformations": [{"type": "DIRECT", "subtype": "TRANSFORMATION",
                                                        "description": "", "masking": False}]}]},
         "inEdges": [{"origin": total, "destination": avg}], "outEdges": []},
        {"id": total, "type": "DATASET_FIELD",
         "data": {"namespace": "pg", "dataset": "sum", "field": "total", "fieldType": None,
                  "transformationDescription": None, "transformationType": "DIRECT",
                  "inputFields": [{"namespace": "pg", "dataset": "orders", "field": "amount",
                                   "transformationDescription": None, "transformationType": "DIRECT",
                                   "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION",
                                                        "description": "", "masking": False}]}]},
         "inEdges": [{"origin": amount, "destination": total}], "outEdges": [{"origin": total, "destination": avg}]},
    ]}
    # a field with no column lineage is still its own node
    lone = column_document((NodeRef("dataset", "pg", "x"), "c"), [], [])
    assert [n["id"] for n in lone["graph"]] == ["datasetField:pg:x:c"]


def test_access_rules_are_per_method_then_per_path() -> None:
    rules = {"POST /api/v1/lineage": Action.INTAKE, "GET /api/v1/lineage": Action.QUERY, "/api/alerts": Action.QUERY,
             "GET /health": PUBLIC}
    assert rule_for(rules, "POST", "/api/v1/lineage") is Action.INTAKE
    assert rule_for(rules, "GET", "/api/v1/lineage") is Action.QUERY
    assert rule_for(rules, "HEAD", "/api/v1/lineage") is Action.QUERY  # HEAD follows GET
    assert rule_for(rules, "get", "/health") is PUBLIC
    # a method with no rule on a path that has only method rules: none (the app refuses to start)
    assert rule_for(rules, "PUT", "/api/v1/lineage") is None
    assert rule_for(rules, "DELETE", "/api/alerts") is Action.QUERY  # a bare path covers every method
    assert rule_for(rules, "GET", "/nowhere") is None


def test_a_run_events_dataset_keeps_its_symlinks_for_the_walks() -> None:
    import json
    from pathlib import Path

    from lineage.graph import build_record
    from producers.openlineage import from_openlineage

    corpus = Path(__file__).resolve().parents[1] / "data" / "openlineage"
    kind, rec = from_openlineage(json.loads((corpus / "spark_ctas_aggregation.json").read_text()))
    nodes = {n.node_id: n for n in build_record(kind, rec, "c").nodes}
    assert nodes["dataset:hdfs://namenode:8020//warehouse/orders"].attributes == {
        "symlinks": '["dataset:hive://metastore:9083/sales.orders"]'}
    assert nodes["dataset:hdfs://namenode:8020//warehouse/sales_summary"].attributes == {}  # no facet, no attribute


def test_a_streaming_job_is_a_stream_job() -> None:
    row = {**_row("job:flink/s", "job", "flink", "s", [], []), "processing_type": "STREAMING"}
    assert lineage_document([row])["graph"][0]["data"]["type"] == "STREAM"
