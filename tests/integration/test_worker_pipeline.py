"""The worker end to end on the real stack: all four classes reach the graph topic, scrubbed."""
from __future__ import annotations

import orjson
import pytest

from lineage.graph import GraphRecord
from factories import inference_event, run_event
from integration.worker_support import (
    encode_many,
    header_map,
    produce_all,
    read_topic,
    running_workers,
    worker_logs,
)

pytestmark = [pytest.mark.integration]


def test_events_reach_graph_topic_scrubbed(settings_factory, make_topics):
    s = settings_factory()
    make_topics(s)
    t = s.topics
    secret = "SECRET-INCOME-93813"
    items = []
    for kind in ("dataset", "feature", "training"):
        (raw,) = encode_many(s, kind, [run_event(kind)])
        items.append((t.event_topics[kind], None, raw, None))
    inf = inference_event(subject_id="alice-77123", snapshot={"income": secret}, risk=0.95)
    (raw,) = encode_many(s, "inference", [inf])
    items.append((t.inference, inf["prediction_id"].encode(), raw, [("correlation_id", b"flow-42")]))
    items.append((t.dataset, b"k", b"\x07garbage", [("x", b"y")]))
    with running_workers(s):
        produce_all(s, items)
        graph = read_topic(s, t.graph, 4, timeout=90)
        dlq = read_topic(s, t.deadletter, 1, timeout=30)
    assert len(graph) == 4, worker_logs(s)[-3000:]
    records = [GraphRecord.from_bytes(m.value()) for m in graph]
    assert sorted(r.kind for r in records) == ["dataset", "feature", "inference", "training"]
    pred = next(r for r in records if r.kind == "inference")
    assert pred.correlation_id == "flow-42"
    assert pred.inference is not None and pred.inference["tier"] == "consequential"
    assert pred.inference["snapshot_pointer"].startswith("pii-store:v1/")
    for m in graph:
        assert b"alice-77123" not in m.value() and secret.encode() not in m.value()
        assert m.key() == orjson.loads(m.value())["event_id"].encode()
    assert len(dlq) == 1
    h = header_map(dlq[0])
    # undecodable bytes may hold anything: sealed under the period's dead-letter key
    assert dlq[0].value() != b"\x07garbage" and h["x"] == b"y"
    assert h["dlq.sealed"] == b"AES-256-GCM" and h["dlq.key"].startswith(b"__deadletter__.")
    assert h["dlq.reason"] == b"bad_magic" and h["dlq.topic"] == t.dataset.encode()


def test_worker_counters_count_per_reason(settings_factory, make_topics):
    import time

    import redis

    from lineage.keyspace import KeySpace

    s = settings_factory()
    make_topics(s)
    (raw,) = encode_many(s, "dataset", [run_event("dataset")])
    with running_workers(s):
        produce_all(s, [(s.topics.dataset, None, raw, None), (s.topics.dataset, None, b"\x01x", None)])
        read_topic(s, s.topics.graph, 1, timeout=60)
        read_topic(s, s.topics.deadletter, 1, timeout=30)
        deadline, stats = time.monotonic() + 20, {}
        client = redis.Redis.from_url(s.redis_url)
        try:  # the counters all workers add to (served by the sink at /api/pipeline/stats)
            while time.monotonic() < deadline and stats.get("dlq.bad_magic") != 1:
                stats = {k.decode(): int(v) for k, v in client.hgetall(KeySpace.of(s).stats(s.app_id)).items()}
                time.sleep(0.2)
        finally:
            client.close()
    assert stats["dlq.bad_magic"] == 1 and stats["accepted.dataset"] == 1
