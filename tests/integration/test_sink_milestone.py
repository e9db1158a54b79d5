"""End to end: GraphRecords on a real Kafka topic -> `lineage sink` subprocess -> chDB -> queries via its API."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration.lineage_scenario import RUN, scenario_records
from integration.sink_support import (
    api_sql, committed, end_offsets, free_port, produce, run_cli, sink_group, start_sink, stop_sink, wait_healthy,
)
from helpers import wait_until
from sinks.clickhouse.client import store_id

pytestmark = [pytest.mark.integration]


def test_sink_consumes_graph_topic_and_serves_queries(settings_factory, make_topics, tmp_path: Path) -> None:
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    records = scenario_records()
    produce(settings, records)
    log = tmp_path / "sink.log"
    proc = start_sink(settings, log, "--linger", "0.2")
    try:
        health = wait_healthy(settings, proc, log)
        assert health["store"] == store_id(settings.clickhouse_dsn, settings.clickhouse_database) and "dsn" not in health
        wait_until(lambda: api_sql(settings, "SELECT count() FROM raw_events")[0][0] == len(records), 60, "13 raw rows")

        # the CLI goes through the sink's API (the chDB directory is locked by the sink)
        out = json.loads(run_cli(settings, "query", "prediction", "p1", "--json").stdout)
        assert [(r["depth"], r["node_id"], r["edge_type"]) for r in out][:3] == [
            (1, "model_version:fraud@1", "predicted"),
            (2, f"run:{RUN['T1']}", "produced"),
            (3, "dataset:warehouse://dw/dw.customers", "read_by"),
        ]
        down = json.loads(
            run_cli(settings, "query", "downstream", "--namespace", "warehouse://dw", "--name", "dw.customers", "--json").stdout
        )
        reached = {r["node_id"] for r in down}
        assert {"prediction:p1", "prediction:p2", "prediction:p3", "prediction:p4", "model:fraud"} <= reached
        sql = run_cli(settings, "sql", "SELECT count() AS n FROM edges FINAL", "--json")
        assert json.loads(sql.stdout) == [{"n": sum(len(r.edges) for r in records)}]
        bad = run_cli(settings, "sql", "DROP TABLE edges", check=False)
        assert bad.returncode == 1 and "read-only" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        assert stop_sink(proc) == 0, log.read_text()[-3000:]
    # offsets were committed after the insert, up to the end of the topic
    parts = settings.topics.partitions
    ends = end_offsets(settings, settings.topics.graph, parts)
    assert committed(settings, sink_group(settings), settings.topics.graph, parts) == {
        p: (o if o > 0 else -1001) for p, o in ends.items()
    }
    # with the sink stopped the CLI opens the store directly
    out = json.loads(run_cli(settings, "query", "prediction", "p3", "--json").stdout)
    assert out[0]["node_id"] == "model_version:fraud@2"
