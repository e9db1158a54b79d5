"""Rejections on the real stack: every reason reaches the dead-letter topic with its reason code,
original bytes and headers; counters per reason; fuzzed traffic never stalls valid events."""
from __future__ import annotations

import random
import time
import uuid

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from lineage.graph import GraphRecord
from lineage.keyspace import KeySpace
from lineage.pii.keys import DataKeys
from lineage.deadletters import open_dead_letter
from factories import inference_event, now_us, openlineage_event, run_event
from integration.worker_support import (
    encode_many,
    header_map,
    produce_all,
    read_to_end,
    read_topic,
    running_workers,
    worker_logs,
)

pytestmark = [pytest.mark.integration]
DAY_US = 86_400 * 1_000_000


def test_every_reason_reaches_the_dead_letter_topic(settings_factory, make_topics):
    s = settings_factory(validation={"max_message_bytes": 200_000})
    make_topics(s)
    t = s.topics
    enc = lambda kind, ev: encode_many(s, kind, [ev])[0]  # noqa: E731
    good = enc("dataset", run_event("dataset"))
    run_id = str(uuid.uuid4())
    cases: list[tuple[str, str, bytes]] = [
        ("empty", t.dataset, b""),
        ("bad_magic", t.dataset, b"\x07garbage"),
        ("truncated", t.dataset, b"\xc3\x01\x00"),
        ("unknown_schema", t.dataset, b"\xc3\x01" + b"\x11" * 8 + b"\x00"),
        ("undecodable", t.dataset, good + b"\x00\x00"),
        ("wrong_topic", t.dataset, enc("feature", run_event("feature"))),
        ("bad_id", t.dataset, enc("dataset", run_event("dataset", event_id="nope"))),
        ("missing_field", t.dataset, enc("dataset", run_event("dataset", producer=""))),
        ("oversize", t.dataset, enc("dataset", run_event("dataset", job={"namespace": "n", "name": "j", "facets": {"big": orjson.dumps({"a": "x" * 250_000}).decode()}}))),
        ("time_future", t.dataset, enc("dataset", run_event("dataset", eventTime=now_us() + DAY_US))),
        ("out_of_range", t.inference, enc("inference", inference_event(risk=1.5, snapshot={"income": "PLANTED-DLQ-1"}))),
        ("unsealed_pii", t.inference, encode_many(s, "inference", [inference_event(snapshot={"income": "PLANTED-DLQ-2"})], sealed=False)[0]),
        ("bad_json", t.openlineage, b"{not json"),
        ("openlineage_invalid", t.openlineage, orjson.dumps({**openlineage_event(), "run": {"runId": "not-a-uuid"}})),
    ]
    items = [(topic, b"k", raw, [("origin", reason.encode())]) for reason, topic, raw in cases]
    # a run that ends twice, COMPLETE then FAIL (same key: same partition, in order): both kept, the FAIL flagged
    items.append((t.dataset, run_id.encode(), enc("dataset", run_event("dataset", run_id, "COMPLETE")), [("origin", b"ok")]))
    items.append((t.dataset, run_id.encode(), enc("dataset", run_event("dataset", run_id, "FAIL")), [("origin", b"run_anomaly")]))
    items.append((t.openlineage, None, orjson.dumps(openlineage_event()), [("origin", b"ok")]))
    # stored, not dead-lettered: an event from 1000 days ago, a facet that is not JSON, a 70 KB facet
    kept = [run_event("dataset", eventTime=now_us() - 1000 * DAY_US),
            run_event("dataset", run={"runId": str(uuid.uuid4()), "parentRunId": None, "facets": {"x": "{"}}),
            run_event("dataset", job={"namespace": "n", "name": "j", "facets": {"big": orjson.dumps({"a": "x" * 70_000}).decode()}})]
    items += [(t.dataset, b"k", enc("dataset", ev), [("origin", b"kept")]) for ev in kept]
    expected_dlq = len(cases)
    with running_workers(s):
        produce_all(s, items)
        dlq = read_topic(s, t.deadletter, expected_dlq, timeout=60, idle=1.0)
        graph = read_topic(s, t.graph, 6, timeout=30, idle=1.0)
    assert len(dlq) == expected_dlq, worker_logs(s)[-2000:]
    records = [GraphRecord.from_bytes(m.value()) for m in graph]
    assert len(graph) == 6 and {rec.kind for rec in records} == {"dataset"}
    stored = {rec.event_id: rec for rec in records}
    assert {ev["event_id"] for ev in kept} <= set(stored)
    notes = {stored[ev["event_id"]].payload.get("quality", {}).get("dropped_facets", [{}])[0].get("why") for ev in kept}
    assert notes == {None, "not_an_object", "over_limit"}
    ended = {rec.event_type: rec for rec in records if rec.payload["run"]["runId"] == run_id}
    assert set(ended) == {"COMPLETE", "FAIL"} and "run_anomaly" not in ended["COMPLETE"].payload
    assert ended["FAIL"].payload["run_anomaly"] == "run already ended with COMPLETE, got FAIL"
    by_origin = {header_map(m)["origin"].decode(): m for m in dlq}
    assert set(by_origin) == {c[0] for c in cases}
    raw_by_reason = {reason: raw for reason, _, raw in cases}
    r = redis.Redis.from_url(s.redis_url)
    keys = DataKeys.from_settings(s, r)
    for origin, msg in by_origin.items():
        h = header_map(msg)
        assert h["dlq.reason"].decode() == origin, (origin, h["dlq.detail"])
        assert h["dlq.detail"] and h["dlq.ts"] and int(h["dlq.offset"]) >= 0
        if origin in raw_by_reason:
            if b"dlq.sealed" in {k.encode() for k in h}:
                assert b"PLANTED-DLQ" not in msg.value()
                assert open_dead_letter(keys, msg.value(), h) == raw_by_reason[origin]
            else:
                assert msg.value() == raw_by_reason[origin]
    # Readable only what decoded as a class without PII fields; the rest sealed, an inference
    # event's under its subject's key, anything else under the period's dead-letter key.
    sealed = {o for o, m in by_origin.items() if "dlq.sealed" in header_map(m)}
    assert sealed == {"empty", "bad_magic", "truncated", "unknown_schema", "undecodable", "wrong_topic",
                      "out_of_range", "unsealed_pii", "bad_json", "openlineage_invalid",
                      "oversize"}  # refused before decoding: its class is unknown
    subject_ref = keys.subject_ref("subject-1")
    assert {o for o in sealed if header_map(by_origin[o])["dlq.key"] == subject_ref.encode()} == {"out_of_range", "unsealed_pii"}
    stats = {k.decode(): int(v) for k, v in r.hgetall(KeySpace.of(s).stats(s.app_id)).items()}
    for origin in by_origin:
        assert stats.get(f"dlq.{origin}") == 1, stats
    assert stats.get("run.anomaly") == 1 and "dlq.run_state" not in stats, stats


# --- fuzzing ----------------------------------------------------------------------------------

MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("random"), st.binary(max_size=300), st.just(0)),
    st.tuples(st.just("field"), st.sampled_from(["event_id", "eventTime", "producer", "runId", "facet"]), st.text(max_size=12)),
)


def _mutate(base: bytes, m: tuple, s, rnd: random.Random) -> tuple[str, bytes]:
    op, a, b = m
    if op == "flip":
        i = a % len(base)
        return "dataset", base[:i] + bytes([base[i] ^ b]) + base[i + 1:]
    if op == "cut":
        return "dataset", base[: a % len(base)]
    if op == "insert":
        i = a % len(base)
        return "dataset", base[:i] + b + base[i:]
    if op == "random":
        return rnd.choice(["dataset", "inference", "openlineage"]), a
    ev = run_event("dataset")
    if a == "runId":
        ev["run"]["runId"] = b
    elif a == "facet":
        ev["run"]["facets"] = {"f": b}
    elif a == "eventTime":
        ev["eventTime"] = now_us() + (hash(b) % 3 - 1) * 10 * DAY_US * 50
    else:
        ev[a] = b
    return "dataset", encode_many(s, "dataset", [ev])[0]


def test_fuzzed_traffic_never_stalls_valid_events(settings_factory, make_topics):
    s = settings_factory()
    make_topics(s)
    t = s.topics
    base = encode_many(s, "dataset", [run_event("dataset")])[0]
    rnd = random.Random(7)
    bad: list[tuple[str, bytes]] = []

    @hsettings(max_examples=3000, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(MUTATIONS)
    def collect(m: tuple) -> None:
        bad.append(_mutate(base, m, s, rnd))

    collect()
    assert len(bad) >= 2000
    valid = [run_event("dataset") for _ in range(3000)]
    valid_raw = encode_many(s, "dataset", valid)
    topic_of = {"dataset": t.dataset, "inference": t.inference, "openlineage": t.openlineage}
    items = []
    stream_bad = iter(bad)
    for raw in valid_raw:  # interleave: a valid event between malformed ones, all partitions
        items.append((t.dataset, None, raw, None))
        nxt = next(stream_bad, None)
        if nxt is not None:
            items.append((topic_of[nxt[0]], None, nxt[1], None))
    items += [(topic_of[k], None, v, None) for k, v in stream_bad]
    total = len(items)
    started = time.monotonic()
    with running_workers(s):
        produce_all(s, items)
        graph = read_topic(s, t.graph, len(valid), timeout=120)

        deadline = time.monotonic() + 60
        while True:
            graph, dlq = read_to_end(s, t.graph), read_to_end(s, t.deadletter)
            if len(graph) + len(dlq) >= total or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # anything extra (a duplicate) would show up now
        graph, dlq = read_to_end(s, t.graph), read_to_end(s, t.deadletter)
    ids = [orjson.loads(m.value())["event_id"] for m in graph]
    assert {e["event_id"] for e in valid} <= set(ids), worker_logs(s)[-2000:]
    assert len(graph) + len(dlq) == total  # every message accounted for exactly once
    reasons = {header_map(m)["dlq.reason"].decode() for m in dlq}
    assert "internal_error" not in reasons, reasons
    assert len(reasons) >= 5, reasons
    assert time.monotonic() - started < 240
