"""Each analyst query answers the hand-checked June 2024 scenario exactly (embedded chDB).

The scenario is described in lineage_scenario.py; the expected rows below were derived by hand
from it, not copied from output.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from datetime import datetime

import pytest

from integration.lineage_scenario import RUN, scenario_records, scenario_store
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import READONLY_SETTINGS, get_query

pytestmark = [pytest.mark.integration]

W = "dataset:warehouse://dw/dw.customers"
CHURN = "dataset:warehouse://dw/dw.churn_report"
S1 = "dataset:postgres://crm:5432/crm.public.customers"
S2 = "dataset:s3://raw/events/clicks"
FS1, FS2, FS3 = "feature_set:customer_fs@1", "feature_set:customer_fs@2", "feature_set:customer_fs@3"
MV1, MV2 = "model_version:fraud@1", "model_version:fraud@2"
R = {k: f"run:{v}" for k, v in RUN.items()}
JOB_ETL, JOB_F, JOB_T = "job:etl/build_customer_table", "job:features/customer_features", "job:training/train_fraud"
JOB_R = "job:reports/churn_report"


def d(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 6, day, hour, minute)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with scenario_store(tmp_path_factory.mktemp("queries") / "clickhouse") as store:
        yield store


def run(store: Store, query: str, **params: object) -> list[dict]:
    spec = get_query(query)
    res = store.query(spec.sql, spec.bind(params), READONLY_SETTINGS)
    return [dict(zip(res.columns, row)) for row in res.rows]


def cols(rows: list[dict], *names: str) -> list[tuple]:
    """The given columns of each row, in order."""
    return [tuple(r[n] for n in names) for r in rows]


WALK_UP = ("depth", "node_id", "version", "edge_type", "downstream_node")
WALK_DOWN = ("depth", "node_id", "version", "edge_type", "upstream_node")


def test_sql_derived_graph_rows_equal_the_python_mapping(store: Store) -> None:
    """The sink parses nodes/edges in ClickHouse; they must equal the reference Python mapping."""
    from sinks.clickhouse import rows

    ref = rows.GraphRows()
    for rec in scenario_records():
        rows.add_record(ref, rows.decode(rec.to_bytes()))
    edges = sorted(set(zip(*ref.edges.data[:7])))  # every column but event_time (checked below)
    got = store.query(
        "SELECT src, dst, edge_type, run_id, src_version, dst_version, event_id FROM edges FINAL ORDER BY ALL"
    ).rows
    assert got == edges and len(got) == 45
    # versions as the asserting record states them: E2 read S1 v2 and wrote W w2
    assert (S1, R["E2"], "read_by", RUN["E2"], "v2", RUN["E2"]) in {e[:6] for e in got}
    assert (R["E2"], W, "produced", RUN["E2"], RUN["E2"], "w2") in {e[:6] for e in got}
    times = {(e, ts) for e, ts in zip(ref.edges.data[6], ref.edges.data[7])}
    got_t = store.query("SELECT event_id, toUnixTimestamp64Micro(event_time) FROM edges FINAL").rows
    assert set(got_t) == times
    nodes = sorted(set((n, t, ns, nm, v, e) for n, t, ns, nm, v, _a, e, _ts in zip(*ref.nodes.data)))
    got_n = store.query("SELECT node_id, node_type, namespace, name, version, event_id FROM nodes FINAL").rows
    assert sorted(got_n) == nodes


def test_prediction_provenance_is_exact(store: Store) -> None:
    rows = run(store, "prediction", prediction_id="p1")
    got = cols(rows, *WALK_UP, "edge_time")
    assert got == [
        (1, MV1, "1", "predicted", "prediction:p1", d(13, 10)),
        (2, R["T1"], RUN["T1"], "produced", MV1, d(12, 3)),
        (3, W, "w1", "read_by", R["T1"], d(12, 3)),
        (3, FS1, "1", "trained", R["T1"], d(12, 3)),
        (3, JOB_T, "", "executes", R["T1"], d(12, 3)),
        # E2 re-wrote W on Jun 16, after T1 trained: not in p1's provenance
        (4, R["E1"], RUN["E1"], "produced", W, d(10, 1)),
        (4, R["F1"], RUN["F1"], "produced", FS1, d(11, 2)),
        (5, S1, "v1", "read_by", R["E1"], d(10, 1)),
        (5, S2, "2024-06-01", "read_by", R["F1"], d(11, 2)),
        (5, W, "w1", "read_by", R["F1"], d(11, 2)),
        (5, JOB_ETL, "", "executes", R["E1"], d(10, 1)),
        (5, JOB_F, "", "executes", R["F1"], d(11, 2)),
    ]
    by_node = {r["node_id"]: r for r in rows}
    assert by_node[MV1]["attributes"]["artifact_digest"] == "sha256:model1"
    assert by_node[FS1]["attributes"]["features"] == "age,income"
    assert run(store, "prediction", prediction_id="nope") == []


def test_prediction_provenance_follows_the_version_read(store: Store) -> None:
    """T2 read W at w2: only E2 (which wrote w2) is in p3's provenance, not E1 (w1), although E1
    also wrote W before T2 ran."""
    rows = run(store, "prediction", prediction_id="p3")
    got = cols(rows, *WALK_UP, "edge_time")
    assert got == [
        (1, MV2, "2", "predicted", "prediction:p3", d(19, 12)),
        (2, R["T2"], RUN["T2"], "produced", MV2, d(18, 3)),
        (3, W, "w2", "read_by", R["T2"], d(18, 3)),
        (3, FS2, "2", "trained", R["T2"], d(18, 3)),
        (3, JOB_T, "", "executes", R["T2"], d(18, 3)),
        (4, R["E2"], RUN["E2"], "produced", W, d(16, 1)),
        (4, R["F2"], RUN["F2"], "produced", FS2, d(17, 2)),
        (5, S1, "v2", "read_by", R["E2"], d(16, 1)),
        (5, S2, "2024-06-01", "read_by", R["F2"], d(17, 2)),
        (5, W, "w2", "read_by", R["F2"], d(17, 2)),
        (5, JOB_ETL, "", "executes", R["E2"], d(16, 1)),
        (5, JOB_F, "", "executes", R["F2"], d(17, 2)),
    ]


def test_read_of_an_older_version_follows_the_run_that_wrote_it(store: Store) -> None:
    """R1 read W pinned at w1 on Jun 23: E1 wrote w1; E3 was W's latest writer by then but is not it."""
    rows = run(store, "upstream", namespace="warehouse://dw", name="dw.churn_report")
    assert cols(rows, *WALK_UP) == [
        (1, R["R1"], RUN["R1"], "produced", CHURN),
        (2, W, "w1", "read_by", R["R1"]),
        (2, JOB_R, "", "executes", R["R1"]),
        (3, R["E1"], RUN["E1"], "produced", W),
        (4, S1, "v1", "read_by", R["E1"]),
        (4, JOB_ETL, "", "executes", R["E1"]),
    ]


def test_read_without_version_follows_the_latest_writer_as_of_the_read(store: Store) -> None:
    """F3 read W without a version on Jun 22: of E1, E2 and E3 only E3 (Jun 21) had written it last."""
    rows = run(store, "upstream", namespace="", name="customer_fs@3")
    assert cols(rows, *WALK_UP) == [
        (1, R["F3"], RUN["F3"], "produced", FS3),
        (2, S2, "2024-06-01", "read_by", R["F3"]),
        (2, W, "w3", "read_by", R["F3"]),  # the version current at the read
        (2, JOB_F, "", "executes", R["F3"]),
        (3, R["E3"], RUN["E3"], "produced", W),
        (4, S1, "v3", "read_by", R["E3"]),
        (4, JOB_ETL, "", "executes", R["E3"]),
    ]


def test_audit_downstream_of_table_rows_june_15_to_20(store: Store) -> None:
    """Which models and predictions are downstream of W's rows from June 15-20."""
    rows = run(store, "downstream", namespace="warehouse://dw", name="dw.customers",
               since="2024-06-15", until="2024-06-20T23:59:59")
    got = cols(rows, *WALK_DOWN)
    assert got == [
        (1, R["F2"], RUN["F2"], "read_by", W),
        (1, R["T2"], RUN["T2"], "read_by", W),
        (2, FS2, "2", "produced", R["F2"]),
        (2, MV2, "2", "produced", R["T2"]),
        (3, "model:fraud", "", "version_of", MV2),
        (3, "prediction:p3", "2", "predicted", MV2),
        (3, "prediction:p4", "2", "predicted", MV2),
        (3, R["T2"], RUN["T2"], "trained", FS2),
    ]
    # p1/p2 were made by version 1, trained on W's rows from before the window
    assert {r["node_id"] for r in rows if r["node_type"] == "prediction"} == {"prediction:p3", "prediction:p4"}


def test_audit_downstream_of_source_rows_june_15_to_20(store: Store) -> None:
    """Which models and predictions are downstream of S1's rows from June 15-20: E2 read them and
    wrote W w2; F2 and T2 read w2. F3 (Jun 22) read W after E3 rewrote it from later rows: not
    impacted, though it read W after E2 wrote it."""
    rows = run(store, "downstream", namespace="postgres://crm:5432", name="crm.public.customers",
               since="2024-06-15", until="2024-06-20T23:59:59")
    got = cols(rows, *WALK_DOWN)
    assert got == [
        (1, R["E2"], RUN["E2"], "read_by", S1),
        (2, W, "w2", "produced", R["E2"]),
        (3, R["F2"], RUN["F2"], "read_by", W),
        (3, R["T2"], RUN["T2"], "read_by", W),
        (4, FS2, "2", "produced", R["F2"]),
        (4, MV2, "2", "produced", R["T2"]),
        (5, "model:fraud", "", "version_of", MV2),
        (5, "prediction:p3", "2", "predicted", MV2),
        (5, "prediction:p4", "2", "predicted", MV2),
        (5, R["T2"], RUN["T2"], "trained", FS2),
    ]
    everything = {r["node_id"] for r in run(store, "downstream", namespace="postgres://crm:5432", name="crm.public.customers")}
    assert {FS3, R["F3"], CHURN, "prediction:p1"} <= everything  # without the window: all of S1's versions


def test_downstream_follows_the_version_written(store: Store) -> None:
    """S1's rows of Jun 10 went into W w1 (E1): read by F1, T1 and, pinned, by R1 on Jun 23; not by
    F2/T2 (they read w2) nor F3 (it read W after E3 rewrote it)."""
    rows = run(store, "downstream", namespace="postgres://crm:5432", name="crm.public.customers",
               since="2024-06-10", until="2024-06-10T23:59:59")
    assert cols(rows, *WALK_DOWN) == [
        (1, R["E1"], RUN["E1"], "read_by", S1),
        (2, W, "w1", "produced", R["E1"]),
        (3, R["F1"], RUN["F1"], "read_by", W),
        (3, R["T1"], RUN["T1"], "read_by", W),
        (3, R["R1"], RUN["R1"], "read_by", W),
        (4, CHURN, "r1", "produced", R["R1"]),
        (4, FS1, "1", "produced", R["F1"]),
        (4, MV1, "1", "produced", R["T1"]),
        (5, "model:fraud", "", "version_of", MV1),
        (5, "prediction:p1", "1", "predicted", MV1),
        (5, "prediction:p2", "1", "predicted", MV1),
        (5, R["T1"], RUN["T1"], "trained", FS1),
    ]


def test_audit_sources_of_predictions_in_a_window(store: Store) -> None:
    """Which source records contributed to predictions of model fraud on June 19 (p2 by v1, p3 by v2)."""
    rows = run(store, "sources", model="fraud", since="2024-06-19", until="2024-06-19T23:59:59")
    assert [(r["namespace"], r["name"], r["versions"], r["is_source"], r["model_versions"], r["predictions"]) for r in rows] == [
        ("postgres://crm:5432", "crm.public.customers", ["v1", "v2"], 1, ["1", "2"], 2),
        ("s3://raw", "events/clicks", ["2024-06-01"], 1, ["1", "2"], 2),
        ("warehouse://dw", "dw.customers", ["w1", "w2"], 0, ["1", "2"], 2),
    ]
    only_v1 = run(store, "sources", model="fraud", since="2024-06-13", until="2024-06-13T23:59:59")
    assert [(r["name"], r["versions"], r["model_versions"]) for r in only_v1] == [
        ("crm.public.customers", ["v1"], ["1"]),
        ("events/clicks", ["2024-06-01"], ["1"]),
        ("dw.customers", ["w1"], ["1"]),
    ]
    # p4 (Jun 25, version 2): T2 read W w2, written by E2 from S1 v2; E1's v1 did not contribute
    only_v2 = run(store, "sources", model="fraud", since="2024-06-25", until="2024-06-25T23:59:59")
    assert [(r["name"], r["versions"], r["is_source"], r["model_versions"], r["predictions"]) for r in only_v2] == [
        ("crm.public.customers", ["v2"], 1, ["2"], 1),
        ("events/clicks", ["2024-06-01"], 1, ["2"], 1),
        ("dw.customers", ["w2"], 0, ["2"], 1),
    ]


def test_downstream_time_travel(store: Store) -> None:
    """As of Jun 18 00:00: version 2 was not trained yet and p2 (Jun 19) did not exist."""
    rows = run(store, "downstream", namespace="warehouse://dw", name="dw.customers", as_of="2024-06-18T00:00:00")
    got = [(r["depth"], r["node_id"], r["edge_type"], r["upstream_node"]) for r in rows]
    assert got == [
        (1, R["F1"], "read_by", W),
        (1, R["F2"], "read_by", W),
        (1, R["T1"], "read_by", W),
        (2, FS1, "produced", R["F1"]),
        (2, FS2, "produced", R["F2"]),
        (2, MV1, "produced", R["T1"]),
        (3, "model:fraud", "version_of", MV1),
        (3, "prediction:p1", "predicted", MV1),
        (3, R["T1"], "trained", FS1),
    ]
    now = {r["node_id"] for r in run(store, "downstream", namespace="warehouse://dw", name="dw.customers")}
    assert {"prediction:p2", MV2, "prediction:p3"} <= now


def test_upstream_with_depth_and_as_of(store: Store) -> None:
    rows = run(store, "upstream", namespace="warehouse://dw", name="dw.customers", max_depth=2)
    assert [(r["depth"], r["node_id"], r["version"], r["edge_type"]) for r in rows] == [
        # the start node's own writers are all listed
        (1, R["E1"], RUN["E1"], "produced"),
        (1, R["E2"], RUN["E2"], "produced"),
        (1, R["E3"], RUN["E3"], "produced"),
        (2, S1, "v1", "read_by"),
        (2, S1, "v2", "read_by"),
        (2, S1, "v3", "read_by"),
        (2, JOB_ETL, "", "executes"),
        (2, JOB_ETL, "", "executes"),
        (2, JOB_ETL, "", "executes"),
    ]
    before = run(store, "upstream", namespace="warehouse://dw", name="dw.customers", as_of="2024-06-15")
    assert [(r["node_id"], r["version"]) for r in before] == [(R["E1"], RUN["E1"]), (S1, "v1"), (JOB_ETL, "")]


def test_model_diff(store: Store) -> None:
    rows = run(store, "diff", model="fraud", from_version="1", to_version="2")
    assert [(r["aspect"], r["key"], r["from_value"], r["to_value"], r["change"]) for r in rows] == [
        ("code", "artifact_digest", "sha256:model1", "sha256:model2", "changed"),
        ("code", "code_version", "abc123", "def456", "changed"),
        ("code", "training_run", RUN["T1"], RUN["T2"], "changed"),
        ("dataset_digest", "warehouse://dw/dw.customers", "sha256:w1", "sha256:w2", "changed"),
        ("feature", "tenure", "", "customer_fs", "added"),
        ("feature_set", "customer_fs", "1", "2", "changed"),
        ("feature_set_input", "customer_fs <- warehouse://dw/dw.customers", "w1", "w2", "changed"),
        ("hyperparameter", "lr", "0.1", "0.05", "changed"),
        ("hyperparameter", "n_estimators", "", "200", "added"),
        ("training_dataset", "warehouse://dw/dw.customers", "w1", "w2", "changed"),
    ]
    assert run(store, "diff", model="fraud", from_version="1", to_version="1") == []


def test_completeness(store: Store) -> None:
    rows = run(store, "completeness", model="fraud")
    assert [tuple(r.values()) for r in rows] == [
        # version, predictions, full lineage, share, versions, with training lineage, share, full tier
        ("1", 2, 2, 1.0, 1, 1, 1.0, 2),
        ("2", 2, 2, 1.0, 1, 1, 1.0, 2),
        ("3", 1, 0, 0.0, 1, 0, 0.0, 1),  # p5: unknown version, no training run
        ("(all)", 5, 4, 0.8, 3, 2, 0.6667, 5),
    ]


def test_inference_rows_keep_no_pii(store: Store) -> None:
    cols = [c for (c,) in store.query("SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'inference_lineage'").rows]
    assert "subject_id" not in cols and "feature_snapshot" not in cols
    (row,) = store.query("SELECT subject_ref, snapshot_pointer, extra FROM inference_lineage FINAL WHERE prediction_id = 'p1'").rows
    assert row == ("subj-20", "enc://snap/p1", {})


def test_api_sql_is_read_only_and_named_queries_work(store: Store, stack: Any, tmp_path: Path) -> None:
    from helpers import auth_headers
    from integration.sink_support import api_client, deployment

    settings = deployment(stack, tmp_path)
    headers = auth_headers(settings, "admin")

    async def scenario() -> None:
        async with api_client(settings, store) as http:
            client = _Authed(http, headers)
            ok = await client.post("/api/sql", json={"sql": "SELECT count() AS n FROM raw_events"})
            assert ok.status == 200 and (await ok.json())["rows"] == [[16]]
            for bad in ("DROP TABLE edges", "INSERT INTO edges (src) VALUES ('x')", "SELECT 1; DROP TABLE edges"):
                resp = await client.post("/api/sql", json={"sql": bad})
                assert resp.status == 400, bad
            # readonly=1 backs up the keyword check
            resp = await client.post("/api/sql", json={"sql": "SELECT * FROM edges SETTINGS readonly = 0"})
            assert resp.status == 400
            q = await client.get("/api/query/prediction", params={"prediction_id": "p3"})
            body = await q.json()
            assert q.status == 200 and body["rows"][0][1] == MV2
            missing = await client.get("/api/query/prediction")
            assert missing.status == 400 and "prediction_id" in (await missing.json())["error"]
            health = await (await client.get("/health")).json()
            assert health["status"] == "ok" and "embedded" not in health

    asyncio.run(scenario())
    assert store.query("SELECT count() FROM edges").rows[0][0] > 0


class _Authed:
    """A test client that sends one key with every request."""

    def __init__(self, http: Any, headers: dict[str, str]) -> None:
        self.http, self.headers = http, headers

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.http.post(path, headers=self.headers, **kw)

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.http.get(path, headers=self.headers, **kw)
