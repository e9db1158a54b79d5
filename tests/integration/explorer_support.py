"""Data for the explorer's browser tests, written into an embedded store by the real sink writer.

``fill(directory)`` stores the June 2024 scenario (lineage_scenario.py), one ETL run whose datasets
carry schema and SQL facets with column lineage, and a wide neighbourhood: the lake table
``bulk://lake/source`` read by 1,000 runs that each write their own table, 2,001 nodes within two
hops. Run it in a child process (``python -m integration.explorer_support DIR``) so the directory
is free for the sink that serves it afterwards (chDB: one process per directory).
"""
from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

from factories import dataset_ref, event_uuid, job_ref, run_event
from integration.lineage_scenario import scenario_records
from lineage.graph import Edge, GraphRecord, Node, build_record, dataset_id, run_id, to_micros
from sinks.base import Message
from sinks.clickhouse.client import Store
from sinks.clickhouse.writer import ClickHouseSink

BULK = ("bulk://lake", "source")
BULK_RUNS = 1000
BULK_NODES = 1 + 2 * BULK_RUNS
FACETED = ("warehouse://dw", "dw.customer_scores")


def faceted_record() -> GraphRecord:
    """dw.customers -> (etl.score_customers) -> dw.customer_scores, with schema, SQL and column lineage."""
    schema = {"fields": [{"name": "customer_id", "type": "BIGINT"}, {"name": "score", "type": "DOUBLE",
                                                                        "description": "risk score 0..1"}]}
    lineage = {"fields": {"score": {"inputFields": [{"namespace": "warehouse://dw", "name": "dw.customers", "field": "income",
                                                     "transformations": [{"type": "DIRECT", "subtype": "TRANSFORMATION"}]}]},
                          "customer_id": {"inputFields": [{"namespace": "warehouse://dw", "name": "dw.customers",
                                                           "field": "customer_id",
                                                           "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]}}}
    job = job_ref("etl", "score_customers")
    job["facets"] = {"sql": json.dumps({"query": "SELECT customer_id, income / 1e6 AS score FROM dw.customers"}),
                     "ownership": json.dumps({"owners": [{"name": "team:risk-data"}]})}
    out = dataset_ref(*FACETED, "s1", facets={"schema": json.dumps(schema), "columnLineage": json.dumps(lineage),
                                               "tags": json.dumps({"tags": [{"key": "domain", "value": "credit"}]})})
    ev = run_event("dataset", str(uuid.UUID(int=77)), "COMPLETE", event_id=event_uuid(900),
                   eventTime=datetime(2024, 6, 24, 5, tzinfo=timezone.utc), job=job,
                   inputs=[dataset_ref("warehouse://dw", "dw.customers", "w3")], outputs=[out])
    return build_record("dataset", ev, "c-score")


def bulk_records() -> list[GraphRecord]:
    """1,000 runs reading ``bulk://lake/source`` and writing one table each."""
    src = dataset_id(*BULK)
    t0 = to_micros(datetime(2024, 7, 1, tzinfo=timezone.utc))
    out = []
    for i in range(BULK_RUNS):
        rid = str(uuid.UUID(int=(1 << 64) + i))
        table = Node(dataset_id(BULK[0], f"derived_{i:04d}"), "dataset", BULK[0], f"derived_{i:04d}", "v1")
        run = Node(run_id(rid), "run", "bulk", f"derive_{i:04d}", rid)
        out.append(GraphRecord(event_uuid(10_000 + i), "dataset", t0 + i * 1_000_000, f"c-bulk-{i}", "COMPLETE", {},
                               [Node(src, "dataset", *BULK, "v1"), run, table],
                               [Edge(src, run.node_id, "read_by", rid), Edge(run.node_id, table.node_id, "produced", rid)]))
    return out


#: A dataset whose name is markup: the page must show it as text and run nothing.
HOSTILE = ("xss://evil", '<img src=x onerror="window.__pwned=1">')


def hostile_record() -> GraphRecord:
    ev = run_event("dataset", str(uuid.UUID(int=78)), "COMPLETE", event_id=event_uuid(901),
                   eventTime=datetime(2024, 6, 24, 6, tzinfo=timezone.utc), job=job_ref("etl", "<script>window.__pwned=2</script>"),
                   inputs=[dataset_ref("warehouse://dw", "dw.customers", "w3")], outputs=[dataset_ref(*HOSTILE, "1")])
    return build_record("dataset", ev, "c-hostile")


def fill(directory: Path) -> None:
    store = Store.open(f"chdb://{directory.resolve()}", "lineage")
    try:
        sink = ClickHouseSink(store, ["g"])
        records = [*scenario_records(), faceted_record(), hostile_record(), *bulk_records()]
        for i, rec in enumerate(records):
            sink.add(Message("g", 0, i, rec.event_id.encode(), rec.to_bytes()))
        sink.flush()
    finally:
        store.close()


if __name__ == "__main__":
    fill(Path(sys.argv[1]))
