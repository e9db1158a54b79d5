"""Pure logic of the ClickHouse sink and query layer (no engine): chain, rows, DDL, SQL sandbox judge."""
from __future__ import annotations

import hashlib

import pytest

from factories import inference_event
from lineage.graph import GraphRecord, build_record
from sinks.clickhouse import rows as R
from sinks.clickhouse.chain import GENESIS, row_hash
from sinks.clickhouse.cluster import render_cluster_ddl, render_single_ddl
from sinks.clickhouse.migrations import load_migrations, split_statements
from sinks.clickhouse.queries import QUERIES, get_query, parse_time
from sinks.exceptions import QueryError


def test_row_hash_is_the_documented_formula() -> None:
    expected = hashlib.sha256(b"0" * 64 + b"\ng\n3\n17\n" + b'{"x":1}').hexdigest()
    assert row_hash(GENESIS, "g", 3, 17, b'{"x":1}') == expected
    assert row_hash(expected, "g", 3, 18, b"a") != row_hash(GENESIS, "g", 3, 18, b"a")


# Trees as EXPLAIN AST prints them (recorded from the embedded engine; the engine-backed
# cases are in tests/integration/test_sql_sandbox.py).
_FILE_SCALAR = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function file (children 1)
     ExpressionList (children 1)
      Literal '/etc/hostname'
 Identifier Native"""
_OUTFILE = """SelectWithUnionQuery (children 3)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Literal '/tmp/x'
 Identifier Native"""
_SETTINGS = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Literal UInt64_1
   Set
 Identifier Native"""
_IN_TABLE = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Literal UInt64_1
   Function in (children 1)
    ExpressionList (children 2)
     Literal 'a'
     Identifier raw_events
 Identifier Native"""
_INJECTED = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Identifier a (children 1)
  Function file
 Identifier Native"""
_FROM = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      {table}
 Identifier Native"""
_ROOTS = {
    "show": "ShowTables (children 1)\n Identifier Native",
    "describe": "DescribeQuery (children 2)\n TableExpression (children 1)\n  TableIdentifier lineage.edges\n Identifier Native",
    "insert": "InsertQuery   (children 2)\n Identifier edges\n ExpressionList (children 1)\n  Identifier src",
    "set": "Set",
    "format": _FILE_SCALAR.replace("Function file", "Function plus").replace("Identifier Native", "Identifier JSON"),
}


def _judge(tree: str, role: str = "analyst") -> None:
    from sinks.clickhouse.sandbox import ROLES, Judge, parse_tree

    Judge("lineage", ROLES[role], frozenset({"raw_events", "nodes", "edges"})).statement(parse_tree(tree.split("\n")))


@pytest.mark.parametrize("tree", [
    _FILE_SCALAR.replace("Function file", "Function plus"), _FROM.format(table="TableIdentifier nodes (alias n)"),
    _FROM.format(table="TableIdentifier my_cte"), _ROOTS["show"], _ROOTS["describe"],
])
def test_sandbox_allows_plain_reads(tree: str) -> None:
    _judge(tree)


@pytest.mark.parametrize("tree", [
    _FILE_SCALAR, _FILE_SCALAR.replace("Function file", "Function dictGet"), _OUTFILE, _SETTINGS, _IN_TABLE,
    _INJECTED, _FROM.format(table="Function file (children 1)\n       ExpressionList"),
    _FROM.format(table="TableIdentifier raw_events (alias nodes)"), _FROM.format(table="TableIdentifier system.one"),
    _FROM.format(table="TableIdentifier other.nodes"), _ROOTS["insert"], _ROOTS["set"], _ROOTS["format"], "",
])
def test_sandbox_refuses_what_reaches_outside_or_writes(tree: str) -> None:
    from sinks.exceptions import QueryRefused

    with pytest.raises(QueryRefused) as info:
        _judge(tree)
    assert "\n" not in str(info.value)


def test_sandbox_roles_differ_on_raw_events() -> None:
    from sinks.exceptions import QueryRefused

    _judge(_IN_TABLE, "auditor")
    _judge(_FROM.format(table="TableIdentifier lineage.raw_events"), "auditor")
    with pytest.raises(QueryRefused, match="raw_events"):
        _judge(_FROM.format(table="TableIdentifier raw_events"), "analyst")


def test_query_files_document_their_parameters() -> None:
    for name, spec in QUERIES.items():
        sql = spec.sql
        assert sql.lstrip().startswith("--"), f"{name}.sql has no header comment"
        for p in spec.params:
            assert "{" + p.name + ":" in sql, f"{name}.sql does not use parameter {p.name}"
            assert p.name in sql.split("WITH")[0], f"{name}.sql header does not document {p.name}"


def test_bind_converts_defaults_and_rejects_unknown() -> None:
    spec = get_query("downstream")
    bound = spec.bind({"namespace": "pg", "name": "t", "since": "2024-06-15", "until": "2024-06-20T23:59:59Z"})
    assert bound["since"] == "2024-06-15 00:00:00.000000" and bound["until"] == "2024-06-20 23:59:59.000000"
    assert bound["as_of"].startswith("2299-") and bound["max_depth"] == 10
    with pytest.raises(QueryError, match="no parameter"):
        spec.bind({"name": "t", "depth": 3})
    with pytest.raises(QueryError, match="needs parameter 'name'"):
        spec.bind({})
    with pytest.raises(QueryError, match="bad time"):
        parse_time("June 15")
    assert parse_time("2024-06-15T02:00:00+02:00") == "2024-06-15 00:00:00.000000"


def test_migrations_are_ordered_and_split() -> None:
    migs = load_migrations()
    assert [m.version for m in migs] == sorted(m.version for m in migs) and migs[0].version == 1
    tables = {s.split("EXISTS")[1].split()[0] for m in migs for s in m.statements if "CREATE TABLE" in s}
    assert {"raw_events", "chain_heads", "nodes", "edges", "inference_lineage", "training_runs",
            "pipeline_metrics", "alerts"} <= tables
    assert split_statements("-- c\nSELECT 1;\n\n-- only comment;\nSELECT 2") == ["-- c\nSELECT 1", "SELECT 2"]


def test_cluster_ddl_uses_replicated_and_distributed_engines() -> None:
    ddl = render_cluster_ddl("lineage_cluster")
    assert "CREATE TABLE IF NOT EXISTS edges_local ON CLUSTER 'lineage_cluster'" in ddl
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/edges_local', '{replica}')" in ddl
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/chain_heads_local', '{replica}', last_offset)" in ddl
    assert "CREATE TABLE IF NOT EXISTS edges ON CLUSTER 'lineage_cluster' AS edges_local" in ddl
    assert "Distributed('lineage_cluster', currentDatabase(), edges_local, cityHash64(dst))" in ddl
    assert "non_replicated_deduplication_window" not in ddl
    single = render_single_ddl()
    assert "ON CLUSTER" not in single and "CREATE TABLE IF NOT EXISTS edges\n" in single


def _inference_record() -> GraphRecord:
    """A record built from an unscrubbed event: subject id and snapshot still in the payload."""
    ev = inference_event("p9", subject_id="alice@example.com", risk=0.95, decision="deny", model="m", version="2",
                         event_id="e1", event_time=1_718_409_600_000_000, endpoint="api", feature_snapshot="secret")
    inference = {"prediction_id": "p9", "model_name": "m", "model_version": "2", "tier": "full",
                 "subject_ref": "s-1", "lineage_complete": True, "brand_new_key": "kept", "nested": {"a": 1}}
    return build_record("inference", ev, "c1", inference)


def _inference_bytes() -> bytes:
    rec = _inference_record()
    rec.payload.pop("feature_snapshot")
    return rec.to_bytes()


def test_inference_rows_never_carry_pii_and_keep_unknown_keys() -> None:
    rec = _inference_record()
    rec.payload["feature_snapshot"] = "secret"  # a producer that forgot to scrub
    rows = R.GraphRows()
    R.add_record(rows, R.decode(rec.to_bytes()))
    row = dict(zip(R.INFERENCE_COLUMNS, (col[0] for col in rows.inference.data)))
    flat = repr(row)
    assert "alice@example.com" not in flat and "secret" not in flat
    assert row["subject_ref"] == "s-1" and row["tier"] == "full" and row["lineage_complete"] == 1
    assert row["extra"] == {"brand_new_key": "kept"}
    assert len(rows.edges) == 1 and len(rows.nodes) == 2
    assert rows.inference.to_arrow().num_rows == 1


def test_decode_rejects_what_is_not_a_graph_record() -> None:
    for bad in (b"\xc3\x01garbage", b"[1, 2]", b'{"kind": "x"}'):
        with pytest.raises((ValueError, KeyError, TypeError)):
            R.decode(bad)


def test_epoch_numbers_in_any_unit_mean_the_same_instant() -> None:
    from sinks.clickhouse.rows import epoch_seconds

    instant = 1_795_238_457.386
    for scale in (1, 10**3, 10**6, 10**9):
        assert abs(epoch_seconds(instant * scale) - instant) < 1e-3
    with pytest.raises(ValueError):
        epoch_seconds(10**21)


def test_cluster_ddl_alters_both_table_layers() -> None:
    ddl = render_cluster_ddl("c1")
    assert "ALTER TABLE edges_local ON CLUSTER 'c1' ADD COLUMN IF NOT EXISTS src_version String" in ddl
    assert "ALTER TABLE edges ON CLUSTER 'c1' ADD COLUMN IF NOT EXISTS src_version String" in ddl
    assert "ALTER TABLE raw_events_local ON CLUSTER 'c1' MODIFY SETTING min_bytes_for_wide_part" in ddl
    assert "ALTER TABLE raw_events ON CLUSTER 'c1' MODIFY SETTING" not in ddl  # a Distributed table stores nothing
    assert "CREATE VIEW IF NOT EXISTS inference_lineage_anon ON CLUSTER 'c1' AS" in ddl


def test_edges_carry_the_versions_their_record_states() -> None:
    ev = {"event_id": "e2", "eventType": "COMPLETE", "eventTime": 1_718_409_600_000_000, "producer": "p",
          "run": {"runId": "r1", "facets": {}}, "job": {"namespace": "etl", "name": "j", "facets": {}},
          "inputs": [{"namespace": "pg", "name": "a", "version": "v7"}, {"namespace": "pg", "name": "b"}],
          "outputs": [{"namespace": "s3", "name": "c", "version": "3"}]}
    rows = R.GraphRows()
    R.add_record(rows, R.decode(build_record("dataset", ev, "c").to_bytes()))
    got = {(src, dst): (sv, dv) for src, dst, _t, _r, sv, dv, _e, _ts in zip(*rows.edges.data)}
    assert got == {
        ("job:etl/j", "run:r1"): ("", "r1"),
        ("dataset:pg/a", "run:r1"): ("v7", "r1"),
        ("dataset:pg/b", "run:r1"): ("", "r1"),
        ("run:r1", "dataset:s3/c"): ("r1", "3"),
    }
    rows = R.GraphRows()
    R.add_record(rows, R.decode(_inference_bytes()))
    assert [(e[4], e[5]) for e in zip(*rows.edges.data)] == [("2", "2")]  # model version 2 -> prediction


def test_record_file_is_numbered_row_binary() -> None:
    from sinks.clickhouse.records import RecordFile

    records = [b'{"a":1}', b"x" * 300, b"", bytes(range(256)) * 70]
    rf = RecordFile(records)
    try:
        data = open(rf.path, "rb").read()
    finally:
        rf.remove()
    pos, got = 0, []
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        pos += 4
        length = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        got.append((n, data[pos:pos + length]))
        pos += length
    assert got == list(enumerate(records)) and rf.count == 4
    assert "RowBinary" in rf.source and "'n UInt32, record String'" in rf.source


def test_settings_are_rendered_as_quoted_literals() -> None:
    from sinks.clickhouse.client import settings_sql

    assert settings_sql({}) == ""
    assert settings_sql({"insert_deduplication_token": "g/0/1-2,it's\\", "max_insert_threads": 2}) == (
        " SETTINGS insert_deduplication_token = 'g/0/1-2,it\\'s\\\\', max_insert_threads = 2"
    )
    with pytest.raises(ValueError):
        settings_sql({"x = 1, readonly": 0})


def _messages(*specs: tuple[str, int, int, bytes]) -> list:
    from sinks.base import Message

    return [Message(t, p, o, None, v) for t, p, o, v in specs]


def test_offset_ranges_follow_partitions() -> None:
    from sinks.clickhouse.batch import offset_ranges

    msgs = _messages(("g", 0, 4, b""), ("g", 0, 5, b""), ("g", 1, 9, b""), ("m", 1, 2, b""), ("m", 1, 3, b""))
    assert offset_ranges(msgs) == [("g", 0, 4, 5), ("g", 1, 9, 9), ("m", 1, 2, 3)]
    assert offset_ranges([]) == []


def test_batch_builder_chains_hashes_and_stages_the_raw_log() -> None:
    from sinks.clickhouse.batch import BatchBuilder
    from sinks.clickhouse.client import StagedInsert
    from sinks.clickhouse.metrics import SinkMetrics

    staged: dict[str, object] = {}

    def stage(table: str, arrow_table: object) -> StagedInsert:
        staged[table] = arrow_table
        return StagedInsert(table, arrow_table.num_rows, arrow_table.column_names, arrow_table)  # type: ignore[attr-defined]

    metrics = SinkMetrics()
    builder = BatchBuilder(stage, {"g"}, {"m"}, set(), metrics)
    good = _inference_bytes()
    msgs = _messages(("g", 0, 7, good), ("g", 0, 8, b"not json"), ("m", 0, 1, b'{"name": "x", "ts": 1, "value": 2}'))
    prev = {("g", 0): "f" * 64}
    prepared = builder.build(msgs, prev, records_apart=True)
    raw = staged["raw_events"].to_pydict()  # type: ignore[attr-defined]
    first = row_hash("f" * 64, "g", 0, 7, good)
    second = row_hash(first, "g", 0, 8, b"not json")
    assert raw["prev_hash"] == ["f" * 64, first] and raw["row_hash"] == [first, second]
    assert raw["kind"] == ["inference", "undecodable"] and raw["n"] == [0, 1] and "record" not in raw
    assert prev == {("g", 0): second} and prepared.heads == {("g", 0): (8, second)}
    assert metrics.decode_errors == 1
    assert [s.table for s in prepared.inserts] == ["inference_lineage", "pipeline_metrics"]
    assert prepared.counts == {"inference_lineage": 1, "pipeline_metrics": 1, "raw_events": 2, "edges": 1, "nodes": 2}
    builder.build(msgs[:1], {}, records_apart=False)
    assert staged["raw_events"].column("record").to_pylist() == [good]  # type: ignore[attr-defined]
