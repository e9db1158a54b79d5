"""Scale-out on the real stack: two workers in one group over 6 partitions lose and duplicate
nothing (exact counts); the model-version join works across workers (global changelog table)
and survives a restart (memory store recovered from the changelog)."""
from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from factories import inference_event, run_event, training_event
from integration.worker_support import (
    encode_many,
    produce_all,
    read_to_end,
    read_topic,
    running_workers,
    wait_for_ids,
    worker_logs,
)

pytestmark = [pytest.mark.integration]
N = 20_000


def _members(settings, group: str) -> int:
    admin = AdminClient(settings.kafka_common())  # keep a reference until the future resolves
    groups = admin.describe_consumer_groups([group], request_timeout=5)
    try:
        desc = groups[group].result(timeout=10)
    except Exception:  # noqa: BLE001 - group not there yet / coordinator loading: poll again
        return 0
    return len(desc.members) if str(desc.state).endswith("STABLE") else 0


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_two_workers_six_partitions_exact_counts_and_join(settings_factory, make_topics):
    s = settings_factory(topics={"partitions": 6})
    make_topics(s)
    t = s.topics
    trainings = [training_event("credit", f"v{i}", feature_sets=[f"fs{i}@1"]) for i in range(6)]
    with running_workers(s, 2) as procs:
        _wait(lambda: _members(s, s.events_group) == 2 and _members(s, s.app_id) == 2, 60,
              "both workers to join both groups (the event path's and the Faust app's)")
        produce_all(s, [(t.training, str(i).encode(), raw, None)
                        for i, raw in enumerate(encode_many(s, "training", trainings))])
        read_topic(s, t.graph, 6, timeout=60)
        time.sleep(2)  # the changelog reaches the other worker's global table
        events = []
        for i in range(N):
            if i % 4:
                events.append(("inference", inference_event(f"so-{i}", subject_id=f"s{i % 97}", version=f"v{i % 6}",
                                                            snapshot={"f": "1"} if i % 8 == 1 else None)))
            else:
                events.append(("dataset", run_event("dataset")))
        unknown = inference_event("so-unknown", version="never-trained")
        events.append(("inference", unknown))
        items = []
        for kind, ev in events:
            (raw,) = encode_many(s, kind, [ev])
            items.append((t.event_topics[kind], ev["event_id"].encode(), raw, None))
        produce_all(s, items)
        want = {ev["event_id"] for _, ev in events} | {tr["event_id"] for tr in trainings}
        wait_for_ids(s, t.graph, want, timeout=300)
        time.sleep(2)  # a duplicate would arrive now
        assert all(p.is_running() for p in procs), worker_logs(s)[-2000:]
    graph = read_to_end(s, t.graph)
    ids = [orjson.loads(m.value())["event_id"] for m in graph]
    assert len(ids) == N + 7 and len(set(ids)) == N + 7  # no loss, no duplicates
    assert set(ids) == want
    assert {m.partition() for m in graph} == set(range(6))
    logs = worker_logs(s)
    assert logs.count("consumer loop stopping") == 2
    runs = {tr["training"]["model_version"]: tr["run"]["runId"] for tr in trainings}
    rows = [orjson.loads(m.value())["inference"] for m in graph]
    rows = [r for r in rows if r]
    for r in rows:
        if r["prediction_id"] == "so-unknown":
            assert r["unknown_model_version"] is True and r["training_run_id"] == ""
        else:
            assert r["training_run_id"] == runs[r["model_version"]], r
            assert f"fs{r['model_version'][1:]}@1" in r["feature_sets"]
            assert r["unknown_model_version"] is False
    # restart: a fresh worker recovers the table from its changelog
    late = inference_event("so-after-restart", version="v3")
    with running_workers(s, 1, name="restarted"):
        produce_all(s, [(t.inference, b"x", encode_many(s, "inference", [late])[0], None)])
        _wait(lambda: any(m.key() == late["event_id"].encode() for m in read_to_end(s, t.graph)), 60, "late row")
    row = next(orjson.loads(m.value())["inference"] for m in read_to_end(s, t.graph) if m.key() == late["event_id"].encode())
    assert row["training_run_id"] == runs["v3"] and row["unknown_model_version"] is False
