"""columnLineage facets -> column edges (pure): 1-2-0 transformations, dataset-wide entries,
facets older than 1-2-0, and the graph record's wire format."""
from __future__ import annotations

import json
import time
from pathlib import Path

from lineage.graph import ColumnEdge, GraphRecord, build_record, column_edges, dataset_id
from producers.openlineage import from_openlineage
from stream_apps.validation import ValidationPolicy, validate_event

CORPUS = Path(__file__).resolve().parents[1] / "data" / "openlineage"
HDFS = "hdfs://namenode:8020"
ORDERS, SUMMARY = dataset_id(HDFS, "/warehouse/orders"), dataset_id(HDFS, "/warehouse/sales_summary")


def _record(name: str) -> dict:
    kind, rec = from_openlineage(json.loads((CORPUS / f"{name}.json").read_text()))
    validate_event(kind, rec, time.time_ns() // 1000, ValidationPolicy())
    return rec


def test_spark_ctas_with_an_aggregation() -> None:
    rec = _record("spark_ctas_aggregation")
    got = {(e.src, e.src_column, e.dst_column, e.transformation_type, e.subtype, e.masking, e.dataset_wide)
           for e in column_edges(rec, "r")}
    assert got == {
        (ORDERS, "region", "region", "DIRECT", "IDENTITY", False, False),
        (ORDERS, "amount", "total_amount", "DIRECT", "AGGREGATION", False, False),
        (ORDERS, "customer_id", "customers", "DIRECT", "AGGREGATION", True, False),
        # the GROUP BY column affects every output column
        (ORDERS, "region", "region", "INDIRECT", "GROUP_BY", False, True),
        (ORDERS, "region", "total_amount", "INDIRECT", "GROUP_BY", False, True),
        (ORDERS, "region", "customers", "INDIRECT", "GROUP_BY", False, True),
    }
    assert all(e.dst == SUMMARY and e.run_id == "r" for e in column_edges(rec, "r"))


def test_a_facet_older_than_1_2_0() -> None:
    ev = {"outputs": [{"namespace": "pg://db", "name": "s.t", "facets": {"columnLineage": json.dumps({"fields": {
        "b": {"inputFields": [{"namespace": "pg://db", "name": "s.u", "field": "a"}],
              "transformationType": "IDENTITY", "transformationDescription": "copy"}}})}}]}
    assert column_edges(ev) == [ColumnEdge(dataset_id("pg://db", "s.u"), "a", dataset_id("pg://db", "s.t"), "b",
                                           "DIRECT", "IDENTITY", "copy")]


def test_malformed_facets_state_nothing() -> None:
    for facet in ("[]", '{"fields": 3}', '{"fields": {"x": {"inputFields": [{"field": "a"}]}}}', "not json"):
        assert column_edges({"outputs": [{"namespace": "n", "name": "t", "facets": {"columnLineage": facet}}]}) == []


def test_column_edges_travel_in_the_graph_record() -> None:
    rec = _record("spark_ctas_aggregation")
    graph = build_record("dataset", rec, "c")
    assert len(graph.column_edges) == 6
    assert GraphRecord.from_bytes(graph.to_bytes()).column_edges == graph.column_edges
    older = json.loads(graph.to_bytes())
    del older["column_edges"]  # a record written before column lineage existed
    assert GraphRecord.from_bytes(json.dumps(older).encode()).column_edges == []
