"""When ClickHouse refuses a batch the sink keeps it, reports backpressure, and the retry lands it once."""
from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from integration.lineage_scenario import scenario_records
from sinks.base import Message
from sinks.clickhouse.client import Store
from sinks.clickhouse.writer import ClickHouseSink
from sinks.exceptions import SinkBackpressureError

pytestmark = [pytest.mark.integration]


def test_failed_insert_keeps_the_batch_and_retry_is_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(f"chdb://{tmp_path / 'ch'}", "lineage")
    try:
        sink = ClickHouseSink(store, ["g"])
        recs = scenario_records()
        for i, rec in enumerate(recs):
            sink.add(Message("g", 0, i, None, rec.to_bytes()))
        real = Store.command
        calls = {"n": 0}

        def flaky(self: Store, sql: str, *a: object, **k: object) -> object:
            # ClickHouse goes away while the graph rows are inserted (on the sink's parser
            # connection, next to the raw log landing on the main one)
            if "INSERT INTO nodes" in sql and calls["n"] == 0:
                calls["n"] += 1
                raise OperationalError("Connection refused")
            return real(self, sql, *a, **k)

        monkeypatch.setattr(Store, "command", flaky)
        with pytest.raises(SinkBackpressureError):
            sink.flush()
        assert sink.pending == len(recs) and sink.metrics.insert_failures == 1
        result = sink.flush()  # retry of the same batch: raw rows already stored are skipped ...
        assert result.skipped == len(recs) and result.commit == {("g", 0): len(recs)}
        # ... and the unfinished derivation was completed on reload
        (raw, edges, nodes, heads), = store.query(
            "SELECT (SELECT count() FROM raw_events), (SELECT count() FROM edges FINAL), "
            "(SELECT count() FROM nodes FINAL), (SELECT max(last_offset) FROM chain_heads)"
        ).rows
        assert (raw, edges, nodes, heads) == (len(recs), 45, 61, len(recs) - 1)
        assert sink.pending == 0 and calls["n"] == 1
    finally:
        store.close()
