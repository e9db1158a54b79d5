"""`lineage bench storage`: backward provenance latency on a 10M-edge graph, and sink insert rate.

Everything runs in a temporary embedded chDB directory created and removed here.
- provenance: ``sinks/queries/prediction.sql`` for random predictions of a synthetic graph
  (10M edges generated inside ClickHouse with numbers()); every ETL table is written by three
  runs, each a version, and training runs read a named version (feature runs read without one),
  so both branches of the walk's version rule are on the measured path; baseline: the same
  query without the ``IN (SELECT ...)`` hint, which makes every step a full scan.
- sink: pre-built GraphRecord batches (5 edges each) through ``ClickHouseSink.add/flush``: decode,
  hash chain, nodes and edges parsed by ClickHouse, every table inserted with its deduplication
  token; baseline: the same edges inserted one row per INSERT.
"""
from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lineage.graph import build_record
from lineage.settings import Settings

GRAPH_EDGES = 10_000_000
MODEL_VERSIONS = 1_000
SAMPLES = 300
BASELINE_SAMPLES = 5
SINK_BATCHES = 4
SINK_BATCH = 40_000
NAIVE_ROWS = 1_000
BASE_TS = 1_718_409_600  # 2024-06-15



def _generate_graph(store: Any) -> tuple[int, int]:
    """A layered lineage graph: sources -> ETL -> datasets -> feature runs -> feature sets ->
    training runs -> model versions -> predictions, plus unrelated ETL edges as background."""
    def ins(sql: str) -> None:
        store.command(sql, settings={"max_insert_threads": 2, "max_threads": 2})

    mv = MODEL_VERSIONS
    t_old = f"toDateTime64({BASE_TS - 30 * 86400} + number, 6, 'UTC')"
    # training runs: produced model version, trained by 3 feature sets, reads 2 datasets, job executes
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
        SELECT concat('run:t', toString(number)), concat('model_version:m', toString(number)), 'produced',
               toString(number), concat('et', toString(number)), {t_old} FROM numbers({mv})""")
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
        SELECT concat('feature_set:fs', toString((intDiv(number, 3) * 3 + number % 3 * 7) % 3000)),
               concat('run:t', toString(intDiv(number, 3))), 'trained', '', concat('et', toString(intDiv(number, 3))),
               toDateTime64({BASE_TS - 30 * 86400} + intDiv(number, 3), 6, 'UTC') FROM numbers({mv * 3})""")
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, src_version, event_id, event_time)
        SELECT concat('dataset:d', toString((number * 13) % 5000)), concat('run:t', toString(intDiv(number, 2))), 'read_by',
               '', concat('v', toString(number % 3)), concat('et', toString(intDiv(number, 2))),
               toDateTime64({BASE_TS - 30 * 86400} + intDiv(number, 2), 6, 'UTC')
        FROM numbers({mv * 2})""")
    # feature runs: produce fs, read 2 datasets
    t_feat = f"toDateTime64({BASE_TS - 40 * 86400} + number, 6, 'UTC')"
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
        SELECT concat('run:f', toString(number)), concat('feature_set:fs', toString(number)), 'produced', '',
               concat('ef', toString(number)), {t_feat} FROM numbers(3000)""")
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
        SELECT concat('dataset:d', toString((number * 7) % 5000)), concat('run:f', toString(intDiv(number, 2))), 'read_by', '',
               concat('ef', toString(intDiv(number, 2))), toDateTime64({BASE_TS - 40 * 86400} + intDiv(number, 2), 6, 'UTC')
        FROM numbers(6000)""")
    # ETL: dataset d_i written by three daily runs e_i_k (version v_k, k = 0..2), each reading 2
    # source tables; run e_i_k is number i * 3 + k
    etl = 5000 * 3
    t_etl = f"toDateTime64({BASE_TS - 53 * 86400} + (number % 3) * 86400 + intDiv(number, 3), 6, 'UTC')"
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, dst_version, event_id, event_time)
        SELECT concat('run:e', toString(number)), concat('dataset:d', toString(intDiv(number, 3))), 'produced', '',
               concat('v', toString(number % 3)), concat('ee', toString(number)), {t_etl} FROM numbers({etl})""")
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
        SELECT concat('dataset:src', toString(number % 2000)), concat('run:e', toString(intDiv(number, 2))), 'read_by', '',
               concat('ee', toString(intDiv(number, 2))),
               toDateTime64({BASE_TS - 53 * 86400} + (intDiv(number, 2) % 3) * 86400 + intDiv(number, 6), 6, 'UTC')
        FROM numbers({etl * 2})""")
    fixed = mv * 6 + 3000 + 6000 + etl * 3
    # background: unrelated ETL lineage among 2M datasets (1M edges)
    noise = 1_000_000
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
        SELECT concat('dataset:x', toString(cityHash64(number) % 2000000)), concat('run:x', toString(intDiv(number, 3))),
               'read_by', '', concat('ex', toString(number)), toDateTime64({BASE_TS - 60 * 86400} + number, 6, 'UTC')
        FROM numbers({noise})""")
    predictions = GRAPH_EDGES - fixed - noise
    ins(f"""INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
        SELECT concat('model_version:m', toString(number % {mv})), concat('prediction:', toString(number)), 'predicted',
               '', concat('ep', toString(number)), toDateTime64({BASE_TS} + intDiv(number, 100), 6, 'UTC')
        FROM numbers({predictions})""")
    ins(f"""INSERT INTO nodes (node_id, node_type, namespace, name, version, attributes, event_id, event_time)
        SELECT concat('prediction:', toString(number)), 'prediction', 'scoring', toString(number), toString(number % {mv}),
               map('decision_type', 'approve'), concat('ep', toString(number)), toDateTime64({BASE_TS} + intDiv(number, 100), 6, 'UTC')
        FROM numbers({predictions})""")
    ins(f"""INSERT INTO nodes (node_id, node_type, namespace, name, version, attributes, event_id, event_time)
        SELECT concat('dataset:d', toString(intDiv(number, 3))), 'dataset', 'warehouse://dw',
               concat('d', toString(intDiv(number, 3))), concat('v', toString(number % 3)), map(),
               concat('ee', toString(number)), {t_etl} FROM numbers({etl})""")
    total = store.query("SELECT count() FROM edges").rows[0][0]
    return int(total), predictions


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _sink_messages(batch: int, start: int) -> list[Any]:
    from sinks.base import Message

    out = []
    for i in range(start, start + batch):
        rid = str(uuid.UUID(int=i + 1))
        ev = {
            "event_id": str(uuid.UUID(int=(1 << 100) + i)), "eventType": "COMPLETE", "eventTime": BASE_TS * 1_000_000 + i,
            "producer": "bench", "run": {"runId": rid, "facets": {}},
            "job": {"namespace": "etl", "name": f"job{i % 100}", "facets": {}},
            "inputs": [{"namespace": "pg://db", "name": f"t{i % 1000}", "version": "v1"},
                       {"namespace": "pg://db", "name": f"u{i % 500}", "version": "v2"}],
            "outputs": [{"namespace": "s3://lake", "name": f"o{i}", "version": "1"},
                        {"namespace": "s3://lake", "name": f"q{i}", "version": "1"}],
        }
        rec = build_record("dataset", ev, f"c{i}")
        out.append(Message("bench.graph", i % 6, i // 6, rec.event_id.encode(), rec.to_bytes()))
    return out


def run(settings: Settings, progress: Any) -> dict[str, float | int | str]:
    from sinks.clickhouse.client import Store
    from sinks.clickhouse.queries import READONLY_SETTINGS, get_query
    from sinks.clickhouse.writer import ClickHouseSink

    tmp = Path(tempfile.mkdtemp(prefix="lineage-bench-storage-"))
    task = progress.add_task("storage: generating 10M-edge graph", total=None)
    store = Store.open(f"chdb://{tmp / 'clickhouse'}", "lineage")
    try:
        started = time.perf_counter()
        edges, predictions = _generate_graph(store)
        generate_s = time.perf_counter() - started

        progress.update(task, description="storage: provenance queries")
        sql = get_query("prediction").sql
        rng = random.Random(42)
        ids = [str(rng.randrange(predictions)) for _ in range(SAMPLES + 10)]
        depth_rows = 0
        for pid in ids[:10]:  # warm-up
            store.query(sql, {"prediction_id": pid, "max_depth": 12}, READONLY_SETTINGS)
        lat: list[float] = []
        for pid in ids[10:]:
            t0 = time.perf_counter()
            res = store.query(sql, {"prediction_id": pid, "max_depth": 12}, READONLY_SETTINGS)
            lat.append((time.perf_counter() - t0) * 1000)
            depth_rows = max(depth_rows, len(res.rows))
        naive_sql = sql.replace("e.dst IN (SELECT src FROM up) AND ", "")
        if naive_sql == sql:
            raise RuntimeError("prediction.sql no longer has the IN hint the baseline removes")
        base: list[float] = []
        for pid in ids[10:10 + BASELINE_SAMPLES]:
            t0 = time.perf_counter()
            store.query(naive_sql, {"prediction_id": pid, "max_depth": 12}, READONLY_SETTINGS)
            base.append((time.perf_counter() - t0) * 1000)

        progress.update(task, description="storage: sink insert rate")
        sink = ClickHouseSink(store, ["bench.graph"])
        batches = [_sink_messages(SINK_BATCH, b * SINK_BATCH) for b in range(SINK_BATCHES)]
        written_edges = 0
        t0 = time.perf_counter()
        for batch in batches:
            for m in batch:
                sink.add(m)
            written_edges += sink.flush().rows.get("edges", 0)
        sink_s = time.perf_counter() - t0

        naive = [m for m in _sink_messages(NAIVE_ROWS, 10**7)]
        from sinks.clickhouse import rows as R

        t0 = time.perf_counter()
        naive_edges = 0
        for m in naive:
            rec = R.decode(m.value)
            for e in rec["edges"]:
                store.command(
                    "INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time) VALUES "
                    "({s:String}, {d:String}, {t:String}, {r:String}, {e:String}, fromUnixTimestamp64Micro({ts:Int64}, 'UTC'))",
                    {"s": e["src"], "d": e["dst"], "t": e["edge_type"], "r": e["run_id"], "e": rec["event_id"], "ts": rec["event_time"]},
                )
                naive_edges += 1
            if naive_edges >= NAIVE_ROWS:
                break
        naive_s = time.perf_counter() - t0
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        progress.remove_task(task)

    p50, p99 = statistics.median(lat), _percentile(lat, 0.99)
    base_p50 = statistics.median(base)
    rate = written_edges / sink_s
    naive_rate = naive_edges / naive_s
    return {
        "graph_edges": edges,
        "graph_generate_s": round(generate_s, 1),
        "provenance_samples": len(lat),
        "provenance_rows_max": depth_rows,
        "provenance_p50_ms": round(p50, 2),
        "provenance_p99_ms": round(p99, 2),
        "provenance_baseline_p50_ms": round(base_p50, 1),
        "provenance_speedup_vs_full_scan_walk": round(base_p50 / p50, 1),
        "sink_rows_per_s": round(rate),
        "sink_messages_per_s": round(SINK_BATCH * SINK_BATCHES / sink_s),
        "sink_baseline_row_inserts_per_s": round(naive_rate),
        "sink_speedup_vs_row_inserts": round(rate / naive_rate, 1),
    }
