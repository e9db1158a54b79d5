"""Marquez-compatible reads on the real stack: Spark and Trino events as their integrations emit
them go through the Kafka topic, the worker and the sink; `GET /api/v1/lineage` and
`GET /api/v1/column-lineage` answer in Marquez's documented shape (checked against hand-written
documents), behind the API's keys, per method on the intake's path; and a dataset known under two
identities (the `symlinks` facet: an HDFS location and its Hive table) is reachable by either
name, in the Marquez read and in `lineage query`."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import api_token, wait_until
from integration.sink_support import api_sql, free_port, run_cli
from integration.worker_support import produce_all, running_pipeline
from lineage.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CORPUS = Path(__file__).resolve().parents[1] / "data" / "openlineage"
HDFS, HIVE = "hdfs://namenode:8020", "hive://metastore:9083"
CTAS = "sales_summary_app.execute_create_data_source_table_as_select_command.warehouse_sales_summary"
REPORT = "regional_report_app.execute_insert_into_hadoop_fs_relation_command.reports_regional_kpis"
TRINO_NS, TRINO = "trino://trino-coordinator:8080", "order_counts_by_region"
READ_AT = "2024-03-04T01:02:10.500000Z"  # the report run's event time, in UTC


def get(s: Settings, path: str, params: dict[str, str], token: str | None) -> tuple[int, Any]:
    url = f"{s.api_url}{path}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"null")


def dataset(ns: str, name: str, updated: str, symlinks: list[str] | None = None) -> dict[str, Any]:
    return {"id": {"namespace": ns, "name": name}, "name": name, "namespace": ns, "updatedAt": updated,
            "type": "DB_TABLE", "physicalName": name, "sourceName": ns, "fields": [], "tags": [],
            "currentVersion": None, "symlinks": symlinks or []}


def test_marquez_reads_in_the_documented_shape(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]], tmp_path: Path
) -> None:
    s = settings_factory(api_port=free_port())
    make_topics(s)
    with running_pipeline(s, tmp_path / "sink.log"):
        names = ("airflow_load_hive_table", "spark_ctas_aggregation", "spark_report_from_summary",
                 "trino_read_hive_table", "flink_streaming_running")
        produce_all(s, [(s.topics.openlineage, None, (CORPUS / f"{n}.json").read_bytes(), None) for n in names])
        wait_until(lambda: api_sql(s, "SELECT uniqExact(run_id) FROM edges WHERE edge_type = 'produced'")[0][0] >= 5,
                   120, "the five runs' edges in ClickHouse")
        analyst, emitter = api_token(s, "analyst"), api_token(s, "emitter")

        # the report job, depth 0: its input and output datasets, exactly as Marquez documents them
        status, doc = get(s, "/api/v1/lineage", {"nodeId": f"job:spark:{REPORT}", "depth": "0"}, analyst)
        assert status == 200, doc
        summary, kpis, report = (f"dataset:{HDFS}:/warehouse/sales_summary", f"dataset:{HDFS}:/reports/regional_kpis",
                                 f"job:spark:{REPORT}")
        assert doc == {"graph": [
            {"id": kpis, "type": "DATASET", "data": dataset(HDFS, "/reports/regional_kpis", READ_AT),
             "inEdges": [{"origin": report, "destination": kpis}], "outEdges": []},
            {"id": summary, "type": "DATASET", "data": dataset(HDFS, "/warehouse/sales_summary", READ_AT),
             "inEdges": [], "outEdges": [{"origin": summary, "destination": report}]},
            {"id": report, "type": "JOB",
             "data": {"id": {"namespace": "spark", "name": REPORT}, "name": REPORT, "namespace": "spark",
                      "updatedAt": READ_AT, "type": "BATCH", "simpleName": REPORT,
                      "inputs": [{"namespace": HDFS, "name": "/warehouse/sales_summary"}],
                      "outputs": [{"namespace": HDFS, "name": "/reports/regional_kpis"}]},
             "inEdges": [{"origin": summary, "destination": report}],
             "outEdges": [{"origin": report, "destination": kpis}]},
        ]}

        # the Hive name of /warehouse/orders (stated by Spark's symlinks facet) is the same node:
        # from it, the whole graph, with Airflow's load and Trino's read of the Hive table joined to
        # Spark's lineage of the HDFS location
        status, doc = get(s, "/api/v1/lineage", {"nodeId": f"dataset:{HIVE}:sales.orders"}, analyst)
        assert status == 200, doc
        orders = f"dataset:{HDFS}:/warehouse/orders"
        ids = [n["id"] for n in doc["graph"]]
        load = "job:airflow-prod:load_orders.hive_load"
        assert ids == [kpis, orders, summary, "dataset:postgres://core-db:5432:shop.public.orders",
                       "dataset:postgres://reporting-db:5432:reporting.public.order_counts",
                       load, report, f"job:spark:{CTAS}", f"job:{TRINO_NS}:{TRINO}"]
        node = {n["id"]: n for n in doc["graph"]}
        assert node[orders]["data"]["symlinks"] == [f"dataset:{HIVE}/sales.orders"]
        assert node[orders]["inEdges"] == [{"origin": load, "destination": orders}]
        assert node[orders]["outEdges"] == [{"origin": orders, "destination": f"job:spark:{CTAS}"},
                                            {"origin": orders, "destination": f"job:{TRINO_NS}:{TRINO}"}]
        assert get(s, "/api/v1/lineage", {"nodeId": orders}, analyst)[1] == doc

        # a streaming job (Flink, jobType STREAMING) is a STREAM job, as Marquez types it
        status, doc = get(s, "/api/v1/lineage", {"nodeId": "job:flink-jobs:clickstream_sessionizer", "depth": "0"},
                          analyst)
        assert status == 200 and [(n["id"], n["type"]) for n in doc["graph"]] == [
            ("dataset:kafka://broker-1:9092:clicks", "DATASET"), ("dataset:kafka://broker-1:9092:sessions", "DATASET"),
            ("job:flink-jobs:clickstream_sessionizer", "JOB")], doc
        assert doc["graph"][2]["data"]["type"] == "STREAM"

        # column lineage of one field, with what is computed from it
        field = f"datasetField:{HDFS}:/warehouse/sales_summary:total_amount"
        status, doc = get(s, "/api/v1/column-lineage", {"nodeId": field, "depth": "1", "withDownstream": "true"},
                          analyst)
        assert status == 200, doc
        amount, region = (f"datasetField:{HDFS}:/warehouse/orders:amount", f"datasetField:{HDFS}:/warehouse/orders:region")
        ticket = f"datasetField:{HDFS}:/reports/regional_kpis:avg_ticket"
        assert [n["id"] for n in doc["graph"]] == [ticket, amount, region, field]
        node = {n["id"]: n for n in doc["graph"]}
        assert node[field] == {
            "id": field, "type": "DATASET_FIELD",
            "data": {"namespace": HDFS, "dataset": "/warehouse/sales_summary", "field": "total_amount",
                     "fieldType": None, "transformationDescription": None, "transformationType": "DIRECT",
                     "inputFields": [
                         {"namespace": HDFS, "dataset": "/warehouse/orders", "field": "amount",
                          "transformationDescription": None, "transformationType": "DIRECT",
                          "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION", "description": "",
                                               "masking": False}]},
                         {"namespace": HDFS, "dataset": "/warehouse/orders", "field": "region",
                          "transformationDescription": None, "transformationType": "INDIRECT",
                          "transformations": [{"type": "INDIRECT", "subtype": "GROUP_BY", "description": "",
                                               "masking": False}]}]},
            "inEdges": [{"origin": amount, "destination": field}, {"origin": region, "destination": field}],
            "outEdges": [{"origin": field, "destination": ticket}],
        }
        assert node[ticket]["outEdges"] == [] and node[amount]["inEdges"] == []
        up_only = get(s, "/api/v1/column-lineage", {"nodeId": field, "depth": "1"}, analyst)[1]
        assert [n["id"] for n in up_only["graph"]] == [amount, region, field]

        # keys: none -> 401; an emitter may post lineage on this path but not read it; bad input -> 400
        assert get(s, "/api/v1/lineage", {"nodeId": orders}, None)[0] == 401
        assert get(s, "/api/v1/column-lineage", {"nodeId": field}, None)[0] == 401
        assert get(s, "/api/v1/lineage", {"nodeId": orders}, emitter)[0] == 403
        for params in ({"nodeId": "run:x:y"}, {"nodeId": "dataset:onlyname"}, {}, {"nodeId": orders, "depth": "-1"},
                       {"nodeId": orders, "depth": "deep"}, {"nodeId": orders, "depth": "101"},
                       {"nodeId": orders, "since": "2024-01-01"}):
            status, body = get(s, "/api/v1/lineage", params, analyst)
            assert status == 400 and "\n" not in body["error"], (params, body)
        status, body = get(s, "/api/v1/column-lineage", {"nodeId": field, "withDownstream": "maybe"}, analyst)
        assert status == 400 and "withDownstream" in body["error"]
        assert get(s, "/api/v1/column-lineage", {"nodeId": f"job:spark:{REPORT}"}, analyst)[0] == 400
        # an unknown node: 404, as Marquez answers
        assert get(s, "/api/v1/lineage", {"nodeId": "dataset:nowhere:nothing"}, analyst)[0] == 404
        assert get(s, "/api/v1/column-lineage", {"nodeId": "datasetField:nowhere:nothing:c"}, analyst)[0] == 404
        # the reads are audited like the other queries
        wait_until(lambda: api_sql(s, "SELECT count() FROM query_audit WHERE what = 'marquez_lineage'")[0][0] >= 3,
                   60, "the Marquez reads in the audit log")

        # `lineage query` walks from either identity of the dataset
        def downstream(ns: str, name: str) -> set[str]:
            out = run_cli(s, "query", "downstream", "--namespace", ns, "--name", name, "--depth", "1", "--json").stdout
            return {row["node_id"] for row in json.loads(out)}

        assert downstream(HIVE, "sales.orders") == downstream(HDFS, "/warehouse/orders")
        reached = downstream(HIVE, "sales.orders")
        assert {r.split(":", 1)[0] for r in reached} == {"run"} and len(reached) == 2  # Spark's and Trino's runs
        upstream = run_cli(s, "query", "upstream", "--namespace", HIVE, "--name", "sales.orders", "--json").stdout
        assert json.loads(upstream) == json.loads(
            run_cli(s, "query", "upstream", "--namespace", HDFS, "--name", "/warehouse/orders", "--json").stdout)
        assert {r["node_id"] for r in json.loads(upstream)} == {
            "run:0190a3c2-4000-7000-8000-00000000f001", "job:airflow-prod/load_orders.hive_load",
            "dataset:postgres://core-db:5432/shop.public.orders"}
        # column lineage starts from either name too (Spark stated it for the HDFS name)
        def columns(ns: str, name: str) -> list[dict[str, Any]]:
            out = run_cli(s, "query", "columns", "--namespace", ns, "--name", name, "--column", "amount",
                          "--direction", "downstream", "--json").stdout
            return list(json.loads(out))

        by_hive = columns(HIVE, "sales.orders")
        assert by_hive == columns(HDFS, "/warehouse/orders") and len(by_hive) == 2, by_hive
        # mid-walk: Spark read the HDFS name, Airflow wrote the Hive name; the walk goes through
        out = run_cli(s, "query", "upstream", "--namespace", HDFS, "--name", "/warehouse/sales_summary", "--json").stdout
        reached = {row["node_id"] for row in json.loads(out)}
        assert {f"dataset:{HDFS}//warehouse/orders", "run:0190a3c2-4000-7000-8000-00000000f001",
                "dataset:postgres://core-db:5432/shop.public.orders"} <= reached, reached
        out = run_cli(s, "query", "downstream", "--namespace", "postgres://core-db:5432", "--name", "shop.public.orders",
                      "--json").stdout
        reached = {row["node_id"] for row in json.loads(out)}
        assert {f"dataset:{HIVE}/sales.orders", "run:0190a3c2-7d1e-7b3a-9c4f-1e2d3c4b5a60",  # Spark read the HDFS name
                "run:0190a3c2-9000-7000-8000-00000000e001",  # Trino the Hive name
                f"dataset:{HDFS}//reports/regional_kpis"} <= reached, reached
