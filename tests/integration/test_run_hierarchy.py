"""Run hierarchy on the real stack: an Airflow DAG run, its task run, the Spark application the task
started and the Spark job inside it, as the integrations state it (``parent`` facet 1-2-0 with
``root``), sent to the HTTP intake; `lineage query run` shows a run's place in the hierarchy,
its events and its datasets, from either end."""
from __future__ import annotations

import copy
import json
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import api_token, wait_until
from integration.sink_support import api_sql, free_port, run_cli
from integration.worker_support import running_pipeline
from lineage.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CORPUS = Path(__file__).resolve().parents[1] / "data" / "openlineage"
AIRFLOW = "https://github.com/apache/airflow/tree/providers-openlineage/1.14.0"


def ref(run_id: str, namespace: str, name: str) -> dict[str, Any]:
    return {"run": {"runId": run_id}, "job": {"namespace": namespace, "name": name}}


def parent_facet(parent: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    return {"_producer": AIRFLOW, "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet",
            **parent, "root": root}


def post(s: Settings, event: dict[str, Any], token: str) -> None:
    req = urllib.request.Request(f"{s.api_url}/api/v1/lineage", data=json.dumps(event).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201


def hierarchy(s: Settings, run_id: str) -> list[dict[str, Any]]:
    return json.loads(run_cli(s, "query", "run", run_id, "--json").stdout)


def test_dag_task_spark_app_spark_job(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]], tmp_path: Path
) -> None:
    dag, task, app, job = (str(uuid.uuid4()) for _ in range(4))
    dag_ref, task_ref = ref(dag, "airflow-prod", "sales_dag"), ref(task, "airflow-prod", "sales_dag.build_summary")
    app_ref = ref(app, "spark", "sales_summary_app")
    events = []
    dag_start = {"eventType": "START", "eventTime": "2024-03-04T00:00:05+00:00", "producer": AIRFLOW,
                 "run": {"runId": dag, "facets": {}}, "job": {"namespace": "airflow-prod", "name": "sales_dag",
                                                               "facets": {}}, "inputs": [], "outputs": []}
    events.append(dag_start)
    task_ev = copy.deepcopy(dag_start)
    task_ev.update(eventTime="2024-03-04T00:00:09+00:00", run={"runId": task, "facets": {"parent": parent_facet(dag_ref, dag_ref)}},
                   job={"namespace": "airflow-prod", "name": "sales_dag.build_summary", "facets": {}})
    events.append(task_ev)
    app_ev = copy.deepcopy(dag_start)
    app_ev.update(eventTime="2024-03-04T00:10:00+00:00", producer="https://github.com/OpenLineage/OpenLineage/tree/1.24.2/integration/spark",
                  run={"runId": app, "facets": {"parent": parent_facet(task_ref, dag_ref)}},
                  job={"namespace": "spark", "name": "sales_summary_app", "facets": {}})
    events.append(app_ev)
    spark_job = json.loads((CORPUS / "spark_ctas_aggregation.json").read_text())
    spark_job["run"]["runId"] = job
    spark_job["run"]["facets"]["parent"] = parent_facet(app_ref, dag_ref)
    events.append(spark_job)

    s = settings_factory(api_port=free_port())
    make_topics(s)
    log = tmp_path / "sink.log"
    with running_pipeline(s, log):
        token = api_token(s, "emitter")
        for ev in events:
            post(s, ev, token)
        wait_until(lambda: api_sql(s, f"SELECT count() FROM nodes WHERE node_id = 'run:{job}'")[0][0] > 0
                   and api_sql(s, f"SELECT count() FROM nodes WHERE node_id = 'run:{dag}'")[0][0] > 0, 120,
                   "all four runs stored")
        wait_until(lambda: len([r for r in hierarchy(s, job) if r["section"] == "hierarchy"]) == 4, 60,
                   "the hierarchy of the Spark job")

        rows = hierarchy(s, job)
        got = [(r["level"], r["relation"], r["run_id"], r["namespace"], r["name"]) for r in rows if r["section"] == "hierarchy"]
        assert got == [
            (-3, "root", dag, "airflow-prod", "sales_dag"),
            (-2, "ancestor", task, "airflow-prod", "sales_dag.build_summary"),
            (-1, "ancestor", app, "spark", "sales_summary_app"),
            (0, "self", job, "spark", spark_job["job"]["name"]),
        ]
        assert [(r["state"]) for r in rows if r["section"] == "event"] == ["COMPLETE"]
        assert sorted((r["relation"], r["namespace"], r["name"]) for r in rows if r["section"] == "dataset") == [
            ("input", "hdfs://namenode:8020", "/warehouse/orders"),
            ("output", "hdfs://namenode:8020", "/warehouse/sales_summary"),
        ]
        # from the root: every run below it, nearest first
        down = [(r["level"], r["relation"], r["run_id"]) for r in hierarchy(s, dag) if r["section"] == "hierarchy"]
        assert down == [(0, "self", dag), (1, "descendant", task), (2, "descendant", app), (3, "descendant", job)]
        # a run nobody mentioned: only itself, and a note for people
        res = run_cli(s, "query", "run", str(uuid.uuid4()))
        assert "nothing recorded" in res.stderr
