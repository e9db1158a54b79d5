"""Crash safety: SIGKILL the sink mid-batch several times while 200,000 events flow.

Afterwards every event is in ClickHouse exactly once: the raw log has no duplicate offsets,
the derived tables have exactly one row per event (ReplacingMergeTree, read with FINAL),
the hash chain verifies, and the committed offsets are at the end of the topic.
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from factories import event_uuid, inference_record
from helpers import wait_until
from integration.sink_support import (
    api_sql, committed, end_offsets, free_port, produce, run_cli, sink_group, start_sink, stop_sink, wait_healthy,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.slow]

TOTAL = 200_000
KILLS = 4


def _records(start: int, n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(start, start + n):
        rec = inference_record(
            f"c{i}", {"prediction_id": f"p{i}", "tier": "minimal"}, prediction_id=f"p{i}", event_id=event_uuid(i),
            event_time=1_718_409_600_000_000 + i * 1000, endpoint="scoring", model=f"m{i % 7}", version=str(i % 3),
        )
        out.append((rec.event_id.encode(), rec.to_bytes()))
    return out


def test_sigkill_mid_batch_loses_and_duplicates_nothing(settings_factory, make_topics, tmp_path: Path) -> None:
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    log = tmp_path / "sink.log"
    chunks = [_records(s, 10_000) for s in range(0, TOTAL, 10_000)]
    produced: list[int] = []

    def flow() -> None:  # events keep arriving while the sink is being killed
        for chunk in chunks:
            produced.append(produce(settings, chunk))
            time.sleep(0.3)

    producer = threading.Thread(target=flow, daemon=True)
    producer.start()
    rng = random.Random(7)
    kills: list[int] = []
    for _ in range(KILLS):
        proc = start_sink(settings, log, "--batch-max", "20000", "--linger", "0.3")
        wait_healthy(settings, proc, log)
        before = api_sql(settings, "SELECT count() FROM raw_events")[0][0]
        # wait until the sink is busy with a batch, then kill it without warning
        wait_until(lambda: api_sql(settings, "SELECT count() FROM raw_events")[0][0] > before, 60, "progress")
        time.sleep(rng.uniform(0.05, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        kills.append(before)
    producer.join(120)
    assert sum(produced) == TOTAL

    proc = start_sink(settings, log, "--batch-max", "20000", "--linger", "0.3")
    try:
        wait_healthy(settings, proc, log)
        wait_until(lambda: api_sql(settings, "SELECT count() FROM raw_events")[0][0] >= TOTAL, 180, "all events stored")
        time.sleep(1.0)  # anything extra would show up now
        (raw, raw_ids, dup_offsets), = api_sql(
            settings,
            "SELECT count(), uniqExact(event_id), count() - uniqExact(topic, kafka_partition, kafka_offset) FROM raw_events",
        )
        assert (raw, raw_ids, dup_offsets) == (TOTAL, TOTAL, 0)
        (edges, edge_ids), = api_sql(settings, "SELECT count(), uniqExact(event_id) FROM edges FINAL")
        (nodes,), = api_sql(settings, "SELECT count() FROM nodes FINAL")
        (preds, pred_ids), = api_sql(settings, "SELECT count(), uniqExact(prediction_id) FROM inference_lineage FINAL")
        assert (edges, edge_ids, nodes, preds, pred_ids) == (TOTAL, TOTAL, 2 * TOTAL, TOTAL, TOTAL)
        report = json.loads(run_cli(settings, "verify", "--json").stdout)
        assert report["ok"] is True and report["chains"]["raw_events"]["rows"] == TOTAL
    finally:
        assert stop_sink(proc) == 0, log.read_text()[-3000:]
    parts = settings.topics.partitions
    assert committed(settings, sink_group(settings), settings.topics.graph, parts) == end_offsets(
        settings, settings.topics.graph, parts
    )
    assert len(kills) == KILLS and kills == sorted(kills)
    print(f"raw rows at each SIGKILL: {kills}")
