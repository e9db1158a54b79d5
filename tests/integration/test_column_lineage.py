"""Column-level lineage on the real stack: a Spark CREATE TABLE AS SELECT with an aggregation and
a report computed from its output, as the Spark integration emits them, go through the Kafka
topic, the worker and the sink; `lineage query columns` answers exactly the source columns of
one output column with their transformation types, multi-hop both ways, with masking."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_until
from integration.sink_support import api_sql, free_port, run_cli
from integration.worker_support import produce_all, running_pipeline
from lineage.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CORPUS = Path(__file__).resolve().parents[1] / "data" / "openlineage"
HDFS = "hdfs://namenode:8020"
ORDERS, SUMMARY, REPORT = "/warehouse/orders", "/warehouse/sales_summary", "/reports/regional_kpis"
HOP = ("depth", "dataset", "column", "transformation_type", "subtype", "masking", "via_dataset", "via_column")


def columns(s: Settings, name: str, *args: str) -> list[tuple[Any, ...]]:
    out = run_cli(s, "query", "columns", "--namespace", HDFS, "--name", name, *args, "--json").stdout
    return [tuple(row[k] for k in HOP) for row in json.loads(out)]


def test_spark_ctas_column_lineage_through_the_pipeline(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]], tmp_path: Path
) -> None:
    s = settings_factory(api_port=free_port())
    make_topics(s)
    log = tmp_path / "sink.log"
    with running_pipeline(s, log):
        events = [(CORPUS / f"{n}.json").read_bytes() for n in ("spark_ctas_aggregation", "spark_report_from_summary")]
        produce_all(s, [(s.topics.openlineage, None, ev, None) for ev in events])
        wait_until(lambda: api_sql(s, "SELECT count() FROM column_edges")[0][0] >= 9, 120,
                   "the column edges of both Spark runs in ClickHouse")

        # the aggregated column: exactly its source columns, with their transformations
        assert columns(s, SUMMARY, "--column", "total_amount") == [
            (1, ORDERS, "amount", "DIRECT", "AGGREGATION", 0, SUMMARY, "total_amount"),
            (1, ORDERS, "region", "INDIRECT", "GROUP_BY", 0, SUMMARY, "total_amount"),
        ]
        # two hops up from the report's column, masking per hop
        assert columns(s, REPORT, "--column", "avg_ticket") == [
            (1, SUMMARY, "customers", "DIRECT", "TRANSFORMATION", 0, REPORT, "avg_ticket"),
            (1, SUMMARY, "total_amount", "DIRECT", "TRANSFORMATION", 0, REPORT, "avg_ticket"),
            (2, ORDERS, "amount", "DIRECT", "AGGREGATION", 0, SUMMARY, "total_amount"),
            (2, ORDERS, "customer_id", "DIRECT", "AGGREGATION", 1, SUMMARY, "customers"),
            (2, ORDERS, "region", "INDIRECT", "GROUP_BY", 0, SUMMARY, "customers"),
            (2, ORDERS, "region", "INDIRECT", "GROUP_BY", 0, SUMMARY, "total_amount"),
        ]
        assert columns(s, REPORT, "--column", "avg_ticket", "--depth", "1") == \
            columns(s, REPORT, "--column", "avg_ticket")[:2]
        # downstream from a source column: what is computed from it, hop by hop
        assert columns(s, ORDERS, "--column", "amount", "--direction", "downstream") == [
            (1, SUMMARY, "total_amount", "DIRECT", "AGGREGATION", 0, ORDERS, "amount"),
            (2, REPORT, "avg_ticket", "DIRECT", "TRANSFORMATION", 0, SUMMARY, "total_amount"),
        ]
        down = columns(s, SUMMARY, "--column", "region", "--direction", "downstream")
        assert down == [(1, REPORT, "region_code", "DIRECT", "TRANSFORMATION", 1, SUMMARY, "region")]
        # a column nobody computed anything from: no rows, and a one-line note for people
        assert columns(s, REPORT, "--column", "region_code", "--direction", "downstream") == []
        res = run_cli(s, "query", "columns", "--namespace", HDFS, "--name", REPORT, "--direction", "sideways",
                      check=False)
        assert res.returncode == 2 and "Traceback" not in res.stderr and "--direction" in res.stderr
