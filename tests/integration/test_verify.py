"""`lineage verify` walks the hash chains of the raw log and of the query audit log and reports
altered and missing rows; pruning the audit log past its retention leaves it verifiable."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from integration.lineage_scenario import scenario_records
from integration.sink_support import free_port, run_cli
from lineage.settings import Settings
from sinks.access.audit import build_entry
from sinks.access.roles import Actor, Role
from sinks.base import Message
from sinks.clickhouse.client import Store
from sinks.clickhouse.retention import prune_chain
from sinks.clickhouse.writer import ClickHouseSink

pytestmark = [pytest.mark.integration]


def _fill(settings: Settings) -> dict[tuple[int, int], str]:
    """Scenario records x3 over 3 partitions, in 3 batches; returns (partition, offset) -> event_id.

    Partition 0 gets scenario records 0, 3, 6, 9, 12, 15 of each batch: offsets 4 and 10 hold
    record 12 (prediction p2, decision 'approve')."""
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        sink = ClickHouseSink(store, ["g"])
        ids: dict[tuple[int, int], str] = {}
        offsets = [0, 0, 0]
        for _ in range(3):
            for i, rec in enumerate(scenario_records()):
                p = i % 3
                ids[(p, offsets[p])] = rec.event_id
                sink.add(Message("g", p, offsets[p], None, rec.to_bytes()))
                offsets[p] += 1
            sink.flush()
        assert ids[(0, 4)] == ids[(0, 10)] == scenario_records()[12].event_id
        # a replay of an already stored batch changes nothing
        sink.add(Message("g", 0, 0, None, scenario_records()[0].to_bytes()))
        assert sink.flush().skipped == 1
        return ids
    finally:
        store.close()


def _tamper(settings: Settings, *statements: str) -> None:
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        for stmt in statements:
            store.command(stmt, settings={"mutations_sync": 2})
    finally:
        store.close()


def test_verify_detects_modified_and_deleted_rows(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(data_dir=tmp_path, api_port=free_port())
    ids = _fill(settings)
    ok = run_cli(settings, "verify")
    assert "hash chains intact: raw_events 48 rows in 3 partitions, query_audit 0 rows in 0 partitions" in ok.stdout

    last_p2 = max(o for p, o in ids if p == 2)
    _tamper(
        settings,
        # an auditor-visible edit of one stored record ...
        "ALTER TABLE raw_events UPDATE record = replaceOne(record, 'approve', 'decline') "
        "WHERE kafka_partition = 0 AND kafka_offset = 10",
        # ... a row removed from the middle of a partition ...
        "ALTER TABLE raw_events DELETE WHERE kafka_partition = 1 AND kafka_offset = 5",
        # ... and the newest row of another partition removed
        f"DELETE FROM raw_events WHERE kafka_partition = 2 AND kafka_offset = {last_p2}",
    )
    res = run_cli(settings, "verify", "--json", check=False)
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is False and report["rows"] == 46
    got = [(p["kafka_partition"], p["kafka_offset"], p["event_id"], p["problem"], p["gap_from_offset"]) for p in report["problems"]]
    assert got == [
        (0, 10, ids[(0, 10)], "altered", -1),
        (1, 6, ids[(1, 6)], "missing_before", 4),
        (2, last_p2, "", "missing_tail", last_p2 - 1),
    ]
    table = run_cli(settings, "verify", check=False)
    assert table.returncode == 1 and "altered" in table.stdout and "missing_before" in table.stdout


def test_rewriting_a_row_hash_breaks_the_next_link(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    """A forger who also recomputes row_hash is caught by the next row's prev_hash."""
    settings = settings_factory(data_dir=tmp_path, api_port=free_port())
    ids = _fill(settings)
    _tamper(
        settings,
        "ALTER TABLE raw_events UPDATE record = replaceOne(record, 'approve', 'decline') "
        "WHERE kafka_partition = 0 AND kafka_offset = 4",
        "ALTER TABLE raw_events UPDATE row_hash = lower(hex(SHA256(concat(prev_hash, '\\n', topic, '\\n', "
        "toString(kafka_partition), '\\n', toString(kafka_offset), '\\n', record)))) "
        "WHERE kafka_partition = 0 AND kafka_offset = 4",
    )
    report = json.loads(run_cli(settings, "verify", "--json", check=False).stdout)
    assert [(p["kafka_partition"], p["kafka_offset"], p["event_id"], p["problem"]) for p in report["problems"]] == [
        (0, 5, ids[(0, 5)], "missing_before"),
    ]


AUDIT = "t.audit"
DAY_MS = 86_400_000


def _audit_entries(n: int, days_old: int = 0) -> list[bytes]:
    """``n`` audit records of one analyst, one a minute, the first ``days_old`` days ago."""
    start = time.time_ns() // 1_000_000 - days_old * DAY_MS
    return [
        orjson.dumps(build_entry(Actor("ana", Role.ANALYST), "sql", f"SELECT {i}", reason="check", rows=i,
                                 now_ms=start + i * 60_000))
        for i in range(n)
    ]


def _fill_audit(settings: Settings, values: list[bytes], first_offset: int = 0) -> list[str]:
    """Store audit records through the sink's writer; returns their audit ids by offset."""
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        sink = ClickHouseSink(store, ["g"], audit_topics=[AUDIT])
        for i, value in enumerate(values):
            sink.add(Message(AUDIT, 0, first_offset + i, None, value))
        assert sink.flush().rows.get("query_audit") == len(values)
        return [orjson.loads(v)["audit_id"] for v in values]
    finally:
        store.close()


def _report(settings: Settings) -> dict:
    return json.loads(run_cli(settings, "verify", "--json", check=False).stdout)


def test_verify_detects_changed_and_deleted_audit_rows(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(data_dir=tmp_path, api_port=free_port())
    _fill(settings)
    ids = _fill_audit(settings, _audit_entries(8))
    ok = run_cli(settings, "verify")
    assert "hash chains intact: raw_events 48 rows in 3 partitions, query_audit 8 rows in 1 partition" in ok.stdout

    _tamper(
        settings,
        # someone rewrites who asked (the readable columns are read out of the hashed record) ...
        "ALTER TABLE query_audit UPDATE record = replaceOne(record, '\"who\":\"ana\"', '\"who\":\"bob\"') "
        "WHERE kafka_offset = 2",
        # ... and removes another record from the middle
        "ALTER TABLE query_audit DELETE WHERE kafka_offset = 5",
    )
    report = _report(settings)
    assert report["ok"] is False and report["chains"]["query_audit"] == {"rows": 7, "partitions": 1}
    got = [(p["topic"], p["kafka_offset"], p["event_id"], p["problem"], p["gap_from_offset"]) for p in report["problems"]]
    assert got == [(AUDIT, 2, ids[2], "altered", -1), (AUDIT, 6, ids[6], "missing_before", 4)]


def test_replayed_audit_records_are_stored_once_and_the_chain_continues(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(data_dir=tmp_path, api_port=free_port())
    values = _audit_entries(6)
    _fill_audit(settings, values[:4])
    # a replay of offsets 2..3 (after a crash before the commit) followed by new ones, in a new sink
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        sink = ClickHouseSink(store, ["g"], audit_topics=[AUDIT])
        for offset in range(2, 6):
            sink.add(Message(AUDIT, 0, offset, None, values[offset]))
        result = sink.flush()
        assert result.skipped == 2 and result.rows == {"query_audit": 2}
        assert store.query("SELECT count(), uniqExact(audit_id) FROM query_audit").rows == [(6, 6)]
        assert store.query("SELECT max(last_offset) FROM chain_heads WHERE topic = 't.audit'").rows == [(5,)]
        # a crash after the audit rows landed but before their chain head was recorded ...
        store.command("DELETE FROM chain_heads WHERE topic = 't.audit'")
        ClickHouseSink(store, ["g"], audit_topics=[AUDIT]).load_heads()  # ... is finished on the next start
        assert store.query("SELECT max(last_offset) FROM chain_heads WHERE topic = 't.audit'").rows == [(5,)]
    finally:
        store.close()
    assert _report(settings)["ok"] is True
    # and the recorded head notices a truncated tail
    _tamper(settings, "DELETE FROM query_audit WHERE kafka_offset = 5")
    assert [(p["kafka_offset"], p["problem"]) for p in _report(settings)["problems"]] == [(5, "missing_tail")]


def test_pruned_audit_log_still_verifies(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(data_dir=tmp_path, api_port=free_port())
    old = _audit_entries(5, days_old=40)  # 40 days ago, a minute apart
    recent = _audit_entries(3)
    ids = _fill_audit(settings, old + recent)
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        result = prune_chain(store, datetime.now(timezone.utc) - timedelta(days=30))
        assert (result.deleted, result.broken) == (5, [])
        assert [r[0] for r in store.query("SELECT kafka_offset FROM query_audit ORDER BY 1").rows] == [5, 6, 7]
        # nothing is past retention now: a second prune changes nothing
        assert prune_chain(store, datetime.now(timezone.utc) - timedelta(days=30)).deleted == 0
    finally:
        store.close()
    report = _report(settings)
    assert report["ok"] is True and report["chains"]["query_audit"]["rows"] == 3

    # the recorded start does not hide a record deleted after pruning
    _tamper(settings, "ALTER TABLE query_audit DELETE WHERE kafka_offset = 5")
    got = [(p["kafka_offset"], p["event_id"], p["problem"], p["gap_from_offset"]) for p in _report(settings)["problems"]]
    assert got == [(6, ids[6], "missing_before", 4)]


def test_prune_keeps_the_newest_row_and_skips_a_broken_chain(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(data_dir=tmp_path, api_port=free_port())
    _fill_audit(settings, _audit_entries(4, days_old=40))
    _tamper(settings, "ALTER TABLE query_audit UPDATE record = replaceOne(record, 'check', 'other') "
                      "WHERE kafka_offset = 1")
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        cutoff = datetime.now(timezone.utc)
        assert prune_chain(store, cutoff).broken == [(AUDIT, 0)]  # the evidence stays
        assert store.query("SELECT count() FROM query_audit").rows == [(4,)]
        _tamper(settings, "ALTER TABLE query_audit UPDATE record = replaceOne(record, 'other', 'check') "
                          "WHERE kafka_offset = 1")
        assert prune_chain(store, cutoff).deleted == 3
        # every row is past retention, yet the newest stays: the chain and replays continue from it
        assert store.query("SELECT kafka_offset FROM query_audit").rows == [(3,)]
    finally:
        store.close()
    assert _report(settings)["ok"] is True


def test_the_sink_prunes_at_start_with_its_retention(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(data_dir=tmp_path, api_port=free_port())
    _fill_audit(settings, _audit_entries(3, days_old=10) + _audit_entries(2))
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        sink = ClickHouseSink(store, ["g"], audit_topics=[AUDIT], audit_retention=timedelta(days=7))
        sink.maintain()
        assert sink.metrics.audit_rows_pruned == 3
        sink.maintain()  # not due again for an hour
        assert store.query("SELECT count() FROM query_audit").rows == [(2,)]
    finally:
        store.close()
    assert _report(settings)["ok"] is True
