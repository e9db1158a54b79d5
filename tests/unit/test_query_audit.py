"""Pure parts of the query audit log: records, outcomes, attempts, settings, topic, parameters, batches."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from lineage.pii.exceptions import SubjectErased
from lineage.settings import Settings, check_env
from lineage.topics import TopicSpec, topic_specs
from sinks.access.audit import ACTIONS, DECRYPT, KEY_CREATE, Attempt, build_entry, outcome_of
from sinks.access.roles import Actor, Role
from sinks.clickhouse.chain import GENESIS, row_hash
from sinks.clickhouse.cluster import render_cluster_ddl
from sinks.clickhouse.queries import get_query, parse_since
from sinks.exceptions import QueryError

ANA = Actor("ana", Role.ANALYST, "api")


class _Recorded:
    """Stands in for AuditTrail.record: keeps what would be produced (pure logic only)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, actor: Actor, action: str, what: str, **kw: Any) -> dict[str, Any]:
        known = ("params", "reason", "outcome", "rows", "duration_ms")
        details = {k: v for k, v in kw.items() if k not in known}
        entry = build_entry(actor, action, what, details=details, **{k: kw[k] for k in known if k in kw})
        self.entries.append(entry)
        return entry


def test_entry_has_every_field_and_a_closed_action_list() -> None:
    e = build_entry(ANA, "sql", "SELECT 1", params={"x": 1}, reason="why", outcome="ok", rows=3, duration_ms=1.23456,
                    details={"k": "v"}, now_ms=1_718_409_600_123)
    assert e["ts"] == 1_718_409_600_123 and len(e["audit_id"]) == 36 and e["audit_id"][14] == "7"  # UUIDv7
    assert {k: e[k] for k in ("who", "role", "via", "action", "what", "reason", "rows", "duration_ms")} == {
        "who": "ana", "role": "analyst", "via": "api", "action": "sql", "what": "SELECT 1", "reason": "why",
        "rows": 3, "duration_ms": 1.235}
    assert e["params"] == {"x": 1} and e["details"] == {"k": "v"}
    assert orjson.loads(orjson.dumps(e)) == e
    assert {"sql", "query", "report", "decrypt", "decrypt.deadletter", "erase", "flag", "key.create", "key.revoke",
            "key.rotate"} == ACTIONS
    with pytest.raises(ValueError, match="unknown audit action"):
        build_entry(ANA, "select", "x")


def test_outcomes_name_refusals_and_failures() -> None:
    assert outcome_of(SubjectErased("r1"), (SubjectErased,)).startswith("refused: subject r1 was erased")
    assert outcome_of(KeyError("secret value"), (SubjectErased,)) == "failed: KeyError"  # no message recorded
    assert len(outcome_of(SubjectErased("r" * 500), (SubjectErased,))) == 200


def test_an_attempt_records_its_outcome_whatever_happens() -> None:
    trail = _Recorded()
    with Attempt(trail, ANA, DECRYPT, "ptr", params={"sha256": "d"}, reason="appeal") as ok:  # type: ignore[arg-type]
        ok.rows = 1
        ok.details["subject_ref"] = "s1"
    assert ok.entry is trail.entries[-1]
    assert (ok.entry["outcome"], ok.entry["rows"], ok.entry["details"], ok.entry["params"]) == (
        "ok", 1, {"subject_ref": "s1"}, {"sha256": "d"})
    with pytest.raises(SubjectErased):
        with Attempt(trail, ANA, DECRYPT, "ptr", refusals=(SubjectErased,)):  # type: ignore[arg-type]
            raise SubjectErased("s1")
    with pytest.raises(RuntimeError):
        with Attempt(trail, ANA, KEY_CREATE, "k"):  # type: ignore[arg-type]
            raise RuntimeError("boom")
    assert [e["outcome"][:17] for e in trail.entries] == ["ok", "refused: subject ", "failed: RuntimeEr"]


def test_audit_settings_and_topic(tmp_path: Path) -> None:
    check_env({"LINEAGE_AUDIT__RETENTION_DAYS": "30", "LINEAGE_AUDIT__TOPIC_RETENTION_DAYS": "60",
               "LINEAGE_AUDIT__ACK_TIMEOUT_S": "5"})
    s = Settings(data_dir=tmp_path)
    assert s.audit.retention_days == 2557 and s.topics.audit == "lineage.audit"
    assert topic_specs(s)[s.topics.audit] == TopicSpec(1, {"retention.ms": str(30 * 86_400_000)})


def test_since_takes_durations_or_times() -> None:
    now = datetime(2024, 6, 20, 12, 0, tzinfo=timezone.utc)
    assert parse_since("2h", now) == "2024-06-20 10:00:00.000000"
    assert parse_since("7d", now) == "2024-06-13 12:00:00.000000"
    assert parse_since("2024-06-15T02:00:00+02:00") == "2024-06-15 00:00:00.000000"
    for bad in ("yesterday", "0h", "2w", "-1d"):
        with pytest.raises(QueryError, match="bad time"):
            parse_since(bad)
    spec = get_query("audit_log")
    assert spec.bind({}) == {"since": "1970-01-01 00:00:00.000000", "who": "", "action": "", "limit": 100}
    with pytest.raises(QueryError, match="limit out of range"):
        spec.bind({"limit": "0"})


def test_batch_builder_chains_audit_records_apart_from_the_raw_log() -> None:
    from sinks.base import Message
    from sinks.clickhouse.batch import BatchBuilder
    from sinks.clickhouse.client import StagedInsert
    from sinks.clickhouse.metrics import SinkMetrics

    staged: dict[str, Any] = {}

    def stage(table: str, arrow_table: Any) -> StagedInsert:
        staged[table] = arrow_table
        return StagedInsert(table, arrow_table.num_rows, arrow_table.column_names, arrow_table)

    builder = BatchBuilder(stage, {"g"}, set(), set(), SinkMetrics(), {"a"})
    values = [orjson.dumps(build_entry(ANA, "sql", "SELECT 1")), b"not json: kept as consumed"]
    msgs = [Message("a", 0, 3, None, values[0]), Message("a", 0, 4, None, values[1])]
    prev = {("a", 0): "e" * 64}
    prepared = builder.build(msgs, prev, records_apart=True)
    rows = staged["query_audit"].to_pydict()
    first = row_hash("e" * 64, "a", 0, 3, values[0])
    second = row_hash(first, "a", 0, 4, values[1])
    assert rows == {"topic": ["a", "a"], "kafka_partition": [0, 0], "kafka_offset": [3, 4], "record": values,
                    "prev_hash": ["e" * 64, first], "row_hash": [first, second]}
    assert prepared.raw is None and prepared.inserts == [] and prepared.audit is not None
    assert prepared.heads == {("a", 0): (4, second)} and prepared.counts == {"query_audit": 2}
    assert builder.build(msgs[:1], {}).heads == {("a", 0): (3, row_hash(GENESIS, "a", 0, 3, values[0]))}


def test_cluster_ddl_shards_the_audit_tables_by_chain() -> None:
    ddl = render_cluster_ddl("c1")
    assert "CREATE TABLE IF NOT EXISTS query_audit_local ON CLUSTER 'c1'" in ddl
    assert "Distributed('c1', currentDatabase(), query_audit_local, cityHash64(topic, kafka_partition))" in ddl
    assert "Distributed('c1', currentDatabase(), chain_starts_local, cityHash64(topic, kafka_partition))" in ddl


def test_audit_log_json_decodes_params_and_verify_names_both_chains() -> None:
    from shell.cli.audit import _decoded
    from shell.cli.query import _chain_line

    assert _decoded({"params": '{"i":1}', "details": "", "what": "x"}) == {"params": {"i": 1}, "details": {}, "what": "x"}
    assert _chain_line("query_audit", {"rows": 1, "partitions": 1}) == "query_audit 1 row in 1 partition"
    assert _chain_line("raw_events", {"rows": 48, "partitions": 3}) == "raw_events 48 rows in 3 partitions"
