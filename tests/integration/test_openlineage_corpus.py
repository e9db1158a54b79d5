"""Events as the OpenLineage integrations emit them (``tests/data/openlineage/``: Spark with
column lineage, Airflow with parent/root, dbt, Flink streaming, a client sending a naive time,
events from 2020-2025, static DatasetEvent and JobEvent), sent through the Kafka topic and the HTTP intake on the real stack:
every spec-valid event is stored, whatever its age; a 100 KB facet is dropped with a note and its
event's lineage kept; spec-invalid events (a non-UUID runId, no producer) are refused at once,
with their reason: 400 on HTTP, a dead letter on Kafka. A batch is answered per event."""
from __future__ import annotations

import copy
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers import api_token, wait_until
from integration.sink_support import api_sql, free_port, run_cli
from integration.worker_support import header_map, produce_all, read_topic, running_pipeline
from lineage.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CORPUS = Path(__file__).resolve().parents[1] / "data" / "openlineage"
VALID = ("spark_ctas_aggregation", "airflow_task_complete", "dbt_model_run", "flink_streaming_running",
         "naive_time_python_client")
STATIC = ("static_dataset_event", "static_job_event")
INVALID = {"invalid_airflow_legacy_run_id": ("invalid_field", "runId"),
           "invalid_missing_producer": ("missing_field", "producer")}


def corpus(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / f"{name}.json").read_text())


def with_run_id(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A copy under a fresh runId (so the Kafka and HTTP copies are told apart)."""
    ev = copy.deepcopy(event)
    ev["run"]["runId"] = str(uuid.uuid4())
    return ev["run"]["runId"], ev


def post(url: str, body: bytes, token: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                          "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored_runs(s: Settings, run_ids: set[str]) -> set[str]:
    ids = ",".join(f"'run:{r}'" for r in run_ids)
    return {row[0][4:] for row in api_sql(s, f"SELECT DISTINCT node_id FROM nodes WHERE node_id IN ({ids})")}


def test_the_integration_corpus_through_kafka_and_http(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]], tmp_path: Path
) -> None:
    s = settings_factory(api_port=free_port())
    make_topics(s)
    log = tmp_path / "sink.log"
    big_plan = {"plan": "x" * (100 << 10)}
    with running_pipeline(s, log):
        token = api_token(s, "emitter")
        expected: dict[str, str] = {}  # run id -> corpus file
        kafka_items = []
        for name in VALID:
            run_id, ev = with_run_id(corpus(name))
            expected[run_id] = f"kafka:{name}"
            kafka_items.append((s.topics.openlineage, run_id.encode(), orjson.dumps(ev), None))
        # the same Spark run carrying its 100 KB logical plan, on both transports
        big_runs = []
        for via in ("kafka", "http"):
            run_id, ev = with_run_id(corpus("spark_ctas_aggregation"))
            ev["run"]["facets"]["spark.logicalPlan"] = big_plan
            expected[run_id] = f"{via}:spark+100KB facet"
            big_runs.append(run_id)
            if via == "kafka":
                kafka_items.append((s.topics.openlineage, run_id.encode(), orjson.dumps(ev), None))
            else:
                status, body = post(f"{s.api_url}/api/v1/lineage", orjson.dumps(ev), token)
                assert status == 201, body
                assert body["dropped_facets"][0]["name"] == "spark.logicalPlan"
        for name in STATIC:  # static lineage on Kafka; on HTTP below, restated a second later
            kafka_items.append((s.topics.openlineage, None, (CORPUS / f"{name}.json").read_bytes(), None))
        for name in INVALID:
            kafka_items.append((s.topics.openlineage, None, (CORPUS / f"{name}.json").read_bytes(), None))
        produce_all(s, kafka_items)

        for name in VALID:  # HTTP: every valid event 201, whatever its age
            run_id, ev = with_run_id(corpus(name))
            expected[run_id] = f"http:{name}"
            status, body = post(f"{s.api_url}/api/v1/lineage", orjson.dumps(ev), token)
            assert status == 201, (name, body)
        for name in STATIC:
            ev = corpus(name)
            ev["eventTime"] = ev["eventTime"].replace(":00.000+", ":30.000+").replace(":01.000+", ":31.000+")
            status, body = post(f"{s.api_url}/api/v1/lineage", orjson.dumps(ev), token)
            assert status == 201 and body["kind"] == "dataset", (name, body)
        for name, (reason, field) in INVALID.items():  # refused at once, with the reason
            status, body = post(f"{s.api_url}/api/v1/lineage", (CORPUS / f"{name}.json").read_bytes(), token)
            assert status == 400 and body["error"] == reason and field in body["detail"], (name, body)

        # a batch is answered per event: the valid one accepted, the invalid one refused
        batch_run, good = with_run_id(corpus("dbt_model_run"))
        expected[batch_run] = "http-batch:dbt_model_run"
        status, body = post(f"{s.api_url}/api/v1/lineage/batch",
                            orjson.dumps([good, corpus("invalid_missing_producer")]), token)
        assert status == 207 and (body["accepted"], body["rejected"]) == (1, 1), body
        assert [r["status"] for r in body["results"]] == [201, 400]
        assert body["results"][1]["index"] == 1 and body["results"][1]["error"] == "missing_field"

        wait_until(lambda: stored_runs(s, set(expected)) == set(expected), 180,
                   "every spec-valid corpus event stored")
        # the Kafka copies of the invalid events are dead-lettered with their reason
        dead = read_topic(s, s.topics.deadletter, 2)
        details = sorted(header_map(m)["dlq.detail"].decode() for m in dead)
        assert [header_map(m)["dlq.reason"] for m in dead] == [b"openlineage_invalid"] * 2
        assert any("runId" in d for d in details) and any("producer" in d for d in details), details

        # static lineage: both statements of each, the dataset's facets, the job's declared edges
        static_sql = ("SELECT event_type, count() FROM raw_events WHERE event_type IN ('DatasetEvent', 'JobEvent') "
                      "GROUP BY event_type ORDER BY event_type")
        wait_until(lambda: api_sql(s, static_sql) == [["DatasetEvent", 2], ["JobEvent", 2]], 60, "the static events stored")
        ltv = "dataset:snowflake://acme-xy12345/ANALYTICS.MARTS.CUSTOMER_LTV"
        (attrs,) = api_sql(s, f"SELECT attributes FROM nodes WHERE node_id = '{ltv}' AND attributes['static'] = 'DatasetEvent' LIMIT 1")
        assert attrs[0]["owners"] == "team:growth-analytics" and attrs[0]["tags"] == "pii=false,tier=gold"
        declared = {tuple(e) for e in api_sql(s, "SELECT DISTINCT src, dst, edge_type, run_id FROM edges "
                                                 "WHERE edge_type LIKE 'declared_%'")}
        job = "job:dbt-prod/analytics.marts.customer_ltv"
        assert declared == {("dataset:snowflake://acme-xy12345/ANALYTICS.STAGING.ORDERS", job, "declared_input", ""),
                            ("dataset:snowflake://acme-xy12345/ANALYTICS.STAGING.REFUNDS", job, "declared_input", ""),
                            (job, ltv, "declared_output", "")}
        up = json.loads(run_cli(s, "query", "upstream", "--namespace", "snowflake://acme-xy12345",
                                "--name", "ANALYTICS.MARTS.CUSTOMER_LTV", "--json").stdout)
        assert {(r["depth"], r["node_id"], r["edge_type"]) for r in up} == {
            (1, job, "declared_output"),
            (2, "dataset:snowflake://acme-xy12345/ANALYTICS.STAGING.ORDERS", "declared_input"),
            (2, "dataset:snowflake://acme-xy12345/ANALYTICS.STAGING.REFUNDS", "declared_input"),
        }
        # old events keep their own time
        rows = api_sql(s, "SELECT toYear(min(event_time)) FROM nodes WHERE node_type = 'run'")
        assert rows[0][0] == 2020
        # the 100 KB facet: dropped with a note (name, size, SHA-256), lineage kept
        digest = hashlib.sha256(json.dumps(big_plan, separators=(",", ":"), sort_keys=True).encode()).hexdigest()
        for run_id in big_runs:
            (attrs,) = api_sql(s, f"SELECT attributes['dropped_facets'] FROM nodes WHERE node_id = 'run:{run_id}' LIMIT 1")
            note = json.loads(attrs[0])
            assert [(n["name"], n["sha256"], n["why"]) for n in note] == [("spark.logicalPlan", digest, "over_limit")]
            assert note[0]["bytes"] > 100 << 10
            edges = {tuple(e) for e in api_sql(s, f"SELECT DISTINCT src, dst, edge_type FROM edges WHERE run_id = '{run_id}'")}
            job = corpus("spark_ctas_aggregation")["job"]["name"]
            assert edges >= {
                (f"run:{run_id}", "dataset:hdfs://namenode:8020//warehouse/sales_summary", "produced"),
                ("dataset:hdfs://namenode:8020//warehouse/orders", f"run:{run_id}", "read_by"),
                (f"job:spark/{job}", f"run:{run_id}", "executes"),
            }, edges
