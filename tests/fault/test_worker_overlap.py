"""Batches in flight on the real stack: with up to three small batches in flight, a second worker
joins mid-stream (the first one's partitions are revoked while it has batches in flight: it
finishes and commits them before letting go, so nothing is processed twice), then the newcomer is
killed (SIGKILL, its processing child too) mid-stream. Every event reaches the graph topic, and
ClickHouse holds each exactly once. Run with both processing modes."""
from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from factories import run_event
from fault.test_worker_faults import _children
from helpers import wait_until
from integration.sink_support import api_sql, committed, free_port, start_sink, stop_sink, wait_healthy
from integration.worker_support import encode_many, produce_all, read_to_end, running_workers, wait_for_ids

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.slow]
WARM, LAST = 2_000, 8_000  # events: before the join, around the kill
CHUNK, LAG = 1_000, 5_000  # while the second worker joins: events per produce, and the lag kept up
JOIN_WITHIN_S = 120
KINDS = ("dataset", "feature")
REVOKED = re.compile(r"consumer loop revoked \d+ partitions \((\d+) batches in flight\)")
Item = tuple[str, bytes, bytes, None]


def _fresh(s, n: int) -> tuple[list[dict], list[Item]]:
    """``n`` new events, dataset and feature in turn, with the (topic, key, value, headers) to produce."""
    events = [run_event(KINDS[i % 2]) for i in range(n)]
    encoded = {kind: iter(encode_many(s, kind, events[i::2])) for i, kind in enumerate(KINDS)}
    return events, [(s.topics.event_topics[KINDS[i % 2]], e["event_id"].encode(), next(encoded[KINDS[i % 2]]), None)
                    for i, e in enumerate(events)]


def _behind(s, produced: int) -> int:
    """How many of the ``produced`` events the worker group has not committed yet."""
    done = sum(max(o, 0) for kind in KINDS
               for o in committed(s, s.events_group, s.topics.event_topics[kind], s.topics.partitions).values())
    return produced - done


def _keep_busy(s, stop: threading.Event, start: int, events: list, items: list) -> None:
    """Until ``stop``: produce fresh events whenever the group is less than :data:`LAG` behind,
    appending what went to ``events`` and ``items``. Whatever the worker's speed, it is never idle
    (so a revoke finds batches in flight), and the volume stays what it gets through."""
    deadline = time.monotonic() + JOIN_WITHIN_S
    while not stop.is_set() and time.monotonic() < deadline:
        if _behind(s, start + len(events)) >= LAG:
            stop.wait(0.05)
            continue
        chunk, chunk_items = _fresh(s, CHUNK)
        produce_all(s, chunk_items)
        events += chunk
        items += chunk_items


def _ids(msgs: list) -> Counter[str]:
    return Counter(orjson.loads(m.value())["event_id"] for m in msgs)


@pytest.mark.parametrize("processing", ["process", "thread"])
def test_rebalance_and_kill_with_batches_in_flight_store_every_event_once(
        settings_factory, make_topics, tmp_path: Path, processing: str):
    s = settings_factory(api_port=free_port(), topics={"partitions": 6},
                         worker={"max_in_flight": 3, "batch_max": 50, "processing": processing})
    make_topics(s)
    events, items = _fresh(s, WARM)
    log = tmp_path / "sink.log"
    sink = start_sink(s, log)
    try:
        wait_healthy(s, sink, log)
        with running_workers(s, 1, "first") as (first,):
            produce_all(s, items)
            wait_until(lambda: len(read_to_end(s, s.topics.graph)) >= WARM, 120, "the first worker to catch up")
            # A stream that keeps the first worker busy while the second joins.
            revoked, backlog_events, backlog_items = threading.Event(), [], []
            backlog = threading.Thread(target=_keep_busy, args=(s, revoked, len(events), backlog_events, backlog_items))
            backlog.start()
            with running_workers(s, 1, "second") as (second,):
                try:
                    wait_until(lambda: REVOKED.search(first.log_file.read_text()), JOIN_WITHIN_S,
                               "a rebalance on the first worker")
                finally:
                    revoked.set()
                    backlog.join()
                events += backlog_events
                items += backlog_items
                graph = wait_for_ids(s, s.topics.graph, {e["event_id"] for e in events}, timeout=180)
                in_flight = [int(n) for n in REVOKED.findall(first.log_file.read_text())]
                assert max(in_flight) > 0, f"no revoke found batches in flight: {in_flight}"
                # Drained and committed on revoke: not one event processed twice.
                twice = [k for k, c in _ids(graph).items() if c > 1]
                assert not twice, f"{len(twice)} events processed twice across the rebalance"
                assert "consumer loop assigned" in second.log_file.read_text()

                last_events, last_items = _fresh(s, LAST)
                events += last_events
                items += last_items
                want = {e["event_id"] for e in events}
                rest = threading.Thread(target=produce_all, args=(s, last_items))
                rest.start()
                wait_until(lambda: len(read_to_end(s, s.topics.graph)) > len(graph) + LAST // 4, 120,
                           "the last events to be under way")
                pid = second.pid()
                assert pid is not None
                victims = [pid, *_children(pid)]
                assert len(victims) == (2 if processing == "process" else 1)
                for victim in victims:  # mid-stream, with batches in flight
                    os.kill(victim, signal.SIGKILL)
                rest.join()
                graph = wait_for_ids(s, s.topics.graph, want, timeout=240)
                assert first.is_running()
        redelivered = len(graph) - len(want)
        wait_until(lambda: api_sql(s, "SELECT count() FROM raw_events")[0][0] >= len(graph), 180,
                   "every graph record in ClickHouse")
        (raw_ids,), = api_sql(s, "SELECT uniqExact(event_id) FROM raw_events")
        assert raw_ids == len(want)
        (edges, edge_ids), = api_sql(s, "SELECT count(), uniqExact(event_id) FROM edges FINAL")
        per_kind = [api_sql(s, f"SELECT count() FROM edges FINAL WHERE event_id = '{events[i]['event_id']}'")[0][0]
                    for i in (0, 1)]
        per_topic = Counter(topic for topic, *_ in items)
        assert edge_ids == len(want)
        assert edges == sum(per_topic[s.topics.event_topics[k]] * n for k, n in zip(KINDS, per_kind))
        (nodes_dup,), = api_sql(s, "SELECT count() - uniqExact(node_id, event_id) FROM nodes FINAL")
        assert nodes_dup == 0
        print(f"{processing}: {len(want)} events; revokes found {in_flight} batches in flight; the kill re-delivered {redelivered} records; "
              "ClickHouse stored each event once")
    finally:
        assert stop_sink(sink) == 0, log.read_text()[-3000:]
