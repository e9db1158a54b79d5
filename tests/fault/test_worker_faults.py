"""Faults on the real stack: killing the worker's processing child mid-stream loses nothing
(the unacked batch, if any, is retried by a fresh child); killing one of two workers mid-stream
ends with every event in ClickHouse exactly once (the survivor re-processes the dead worker's
uncommitted batch; the per-event tables keep one copy, the raw log records the topic as it is)."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

from factories import run_event
from integration.worker_support import (
    encode_many,
    produce_all,
    read_to_end,
    running_workers,
    wait_for_ids,
    worker_logs,
)
from integration.sink_support import api_sql, free_port, start_sink, stop_sink, wait_healthy
from helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.fault]
N = 20_000


def _children(pid: int) -> list[int]:
    """The worker's processing child (spawned; not the multiprocessing resource tracker)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
                out.append(kid)
    return out


def test_killed_pipeline_child_loses_nothing(settings_factory, make_topics):
    s = settings_factory()
    make_topics(s)
    events = [run_event("dataset") for _ in range(N)]
    raws = encode_many(s, "dataset", events)
    with running_workers(s) as (worker,):
        produce_all(s, [(s.topics.dataset, None, r, None) for r in raws[:2000]])
        deadline = time.monotonic() + 60
        while len(read_to_end(s, s.topics.graph)) < 2000:
            assert time.monotonic() < deadline, worker_logs(s)[-2000:]
            time.sleep(0.5)
        produce_all(s, [(s.topics.dataset, None, r, None) for r in raws[2000:]])
        (child,) = _children(worker.pid())
        os.kill(child, signal.SIGKILL)  # mid-stream
        deadline = time.monotonic() + 120
        while True:
            ids = {orjson.loads(m.value())["event_id"] for m in read_to_end(s, s.topics.graph)}
            if len(ids) >= N or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert worker.is_running()
        assert _children(worker.pid()) and _children(worker.pid()) != [child]  # a fresh child took over
    assert ids == {e["event_id"] for e in events}, f"{N - len(ids)} lost"
    logs = worker_logs(s)
    assert "processing child died" in logs or "processing child exited (code -9)" in logs


def test_killed_worker_ends_with_every_event_in_clickhouse_once(settings_factory, make_topics, tmp_path: Path):
    s = settings_factory(api_port=free_port(), topics={"partitions": 6})
    make_topics(s)
    events = [run_event(("dataset", "feature")[i % 2]) for i in range(2 * N)]
    raws = [encode_many(s, kind, [ev])[0] for kind, ev in zip(("dataset", "feature") * N, events)]
    items = [(s.topics.dataset if i % 2 == 0 else s.topics.feature, e["event_id"].encode(), r, None)
             for i, (e, r) in enumerate(zip(events, raws))]
    want = {e["event_id"] for e in events}
    log = tmp_path / "sink.log"
    sink = start_sink(s, log)
    try:
        wait_healthy(s, sink, log)
        with running_workers(s, 2) as (first, second):
            produce_all(s, items[:N // 2])
            wait_until(lambda: len(read_to_end(s, s.topics.graph)) > N // 4, 120, "the pipeline to be busy")
            rest = threading.Thread(target=produce_all, args=(s, items[N // 2:]))
            rest.start()
            time.sleep(0.5)
            for pid in [second.pid(), *_children(second.pid())]:  # the whole worker, child included, mid-stream
                os.kill(pid, signal.SIGKILL)
            rest.join()
            graph = wait_for_ids(s, s.topics.graph, want, timeout=240)
            assert first.is_running(), worker_logs(s)[-2000:]
        redelivered = len(graph) - len(want)
        wait_until(lambda: api_sql(s, "SELECT count() FROM raw_events")[0][0] >= len(graph), 180,
                   "every graph record in ClickHouse")
        time.sleep(1.0)
        # The raw log is the log of graph-topic messages: each stored once, re-delivered copies included.
        (raw, raw_ids, dup_offsets), = api_sql(
            s, "SELECT count(), uniqExact(event_id), count() - uniqExact(topic, kafka_partition, kafka_offset) FROM raw_events")
        assert (raw, raw_ids, dup_offsets) == (len(graph), len(want), 0)
        # Every per-event table holds each event exactly once.
        (edges, edge_ids), = api_sql(s, "SELECT count(), uniqExact(event_id) FROM edges FINAL")
        per_kind = [api_sql(s, f"SELECT count() FROM edges FINAL WHERE event_id = '{events[i]['event_id']}'")[0][0]
                    for i in (0, 1)]  # a dataset and a feature event
        assert edge_ids == len(want) and edges == N * sum(per_kind)
        (nodes_dup,), = api_sql(s, "SELECT count() - uniqExact(node_id, event_id) FROM nodes FINAL")
        assert nodes_dup == 0
        print(f"graph topic carried {redelivered} re-delivered records; ClickHouse stored each event once")
    finally:
        assert stop_sink(sink) == 0, log.read_text()[-3000:]
