"""`lineage verify` walks the raw log's hash chain and reports altered and missing rows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration.lineage_scenario import scenario_records
from integration.sink_support import free_port, run_cli
from lineage.settings import Settings
from sinks.base import Message
from sinks.clickhouse.client import Store
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


def test_verify_detects_modified_and_deleted_rows(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_port=free_port())
    ids = _fill(settings)
    ok = run_cli(settings, "verify")
    assert "hash chain intact: 48 rows in 3 partitions" in ok.stdout

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


def test_rewriting_a_row_hash_breaks_the_next_link(tmp_path: Path) -> None:
    """A forger who also recomputes row_hash is caught by the next row's prev_hash."""
    settings = Settings(data_dir=tmp_path, api_port=free_port())
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
