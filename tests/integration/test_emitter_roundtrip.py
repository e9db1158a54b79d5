"""The emitter against the real broker: every class round-trips with its headers and key, one run's
events stay ordered on one partition, a spool left by an emitter that never reached a broker is
replayed by the next one, and schema violations are counted and kept, never dropped silently."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from factories import run_event, sdk_event
from integration.kafka_support import consume
from lineage.codec import Codec
from lineage.pii.sealing import KeyRing, open_pii
from lineage.settings import Settings
from producers import Dataset, DatasetEvent, Emitter, EmitterConfig, Job, Run, adopt_http_headers
from producers.exceptions import InvalidEventError
from producers.metrics import register_metrics

pytestmark = pytest.mark.integration

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def one_of_each() -> list[Any]:
    return [sdk_event(kind) for kind in ("dataset", "feature", "training", "inference")]


@pytest.fixture
def ready(settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]]) -> Settings:
    s = settings_factory()
    make_topics(s)
    return s


def test_every_class_round_trips_with_headers_and_key(ready: Settings) -> None:
    events = one_of_each()
    with Emitter(EmitterConfig.from_settings(ready), "roundtrip") as em:
        with adopt_http_headers({"X-Correlation-ID": "flow-42", "traceparent": TP}):
            ids = [em.emit(e) for e in events]
        assert em.flush(30) == 0
        assert em.stats.delivered == 4 and em.stats.failed == 0
    msgs = consume(ready, list(ready.topics.event_topics.values()), 4)
    codec = Codec.from_settings(ready)
    by_id = {}
    for m in msgs:
        d = codec.decode(m.value())
        by_id[d.record["event_id"]] = (m, d)
    assert set(by_id) == set(ids)
    for e in events:
        m, d = by_id[e.event_id]
        assert d.kind == e.KIND and m.topic() == ready.topics.event_topics[e.KIND]
        headers = {k: v.decode() for k, v in m.headers()}
        assert headers["lineage-event-id"] == e.event_id
        assert headers["lineage-correlation-id"] == "flow-42" == d.record["correlation_id"]
        assert headers["traceparent"] == TP
        if e.KIND == "inference":
            assert m.key() == b"fraud@12"
            assert d.record["risk_score"] == 0.93 and d.record["feature_snapshot"] is None and d.record["subject_id"] == ""
            ring = KeyRing.under(ready.keys_dir)
            subject, snapshot = open_pii(ring.unsealer(), e.prediction_id, d.record["sealed"])  # sealed before the spool
            assert subject == e.subject_id and snapshot["values"] == {"amount": "12.5"}
            assert headers["lineage.seal.kid"] == ring.unsealer().key_ids[0]
        else:
            assert m.key() == f"run:{e.job.namespace}/{e.job.name}".encode()  # as OpenLineage clients key runs
            assert d.record["job"]["name"] == e.job.name
    assert by_id[events[2].event_id][1].record["training"]["metrics"] == {"auc": 0.91}


def test_one_run_stays_ordered_on_one_partition(ready: Settings) -> None:
    run, job = Run(str(uuid.uuid4())), Job("etl", "ordered")
    with Emitter(EmitterConfig.from_settings(ready), "ordered") as em:
        for i in range(300):
            em.emit(DatasetEvent(eventType="RUNNING", run=run, job=job, producer="https://x",
                                 outputs=[Dataset("s3://b", f"part-{i}")]))
        assert em.flush(30) == 0
    msgs = consume(ready, [ready.topics.dataset], 300)
    assert {m.partition() for m in msgs} == {msgs[0].partition()}
    codec = Codec()
    names = [codec.decode(m.value()).record["outputs"][0]["name"] for m in sorted(msgs, key=lambda m: m.offset())]
    assert names == [f"part-{i}" for i in range(300)]


def test_spool_of_an_emitter_without_broker_is_replayed_by_the_next(ready: Settings) -> None:
    dead = EmitterConfig.from_settings(ready, bootstrap_servers="127.0.0.1:1")
    em = Emitter(dead.with_kafka_config({"message.timeout.ms": 1000}), "offline")
    ids = [em.emit(e) for _ in range(100) for e in one_of_each()]
    assert em.close(timeout=0.5) == 400  # nothing could be delivered: all of it stays on disk
    assert list((ready.data_dir / "spool" / "offline").glob("*.seg"))
    with Emitter(EmitterConfig.from_settings(ready), "offline") as again:
        assert again.spool.recovered == 400
        assert again.flush(60) == 0
    msgs = consume(ready, list(ready.topics.event_topics.values()), 400)
    codec = Codec()
    assert {codec.decode(m.value()).record["event_id"] for m in msgs} == set(ids)


def test_schema_violation_is_counted_kept_and_reported(ready: Settings) -> None:
    errors: list[Exception] = []
    with Emitter(EmitterConfig.from_settings(ready), "strict", on_error=errors.append) as em:
        registry = CollectorRegistry()
        register_metrics(registry, em)
        good = one_of_each()[3]
        with pytest.raises(InvalidEventError):  # what the pipeline would refuse is refused at once
            em.emit_record("inference", {"event_id": "x", "model_name": 5})
        em.emit_record("dataset", {**run_event("dataset"), "schemaURL": 5})  # passes the rules, not the schema
        em.emit(good)
        assert em.flush(30) == 0
        assert em.stats.failed == 1 and em.stats.delivered == 1
        assert len(errors) == 1 and "schema" in str(errors[0])
        rejected = (em.spool.directory / "rejected.ndjson").read_text()
        assert "schemaURL" in rejected
        text = generate_latest(registry).decode()
        assert 'lineage_producer_events_delivered_total{producer="strict"} 1.0' in text
        assert 'lineage_producer_events_failed_total{producer="strict",reason="schema"} 1.0' in text
        assert "lineage_producer_spool_depth" in text and "lineage_producer_delivery_latency_seconds_bucket" in text
    consume(ready, [ready.topics.inference], 1)


def test_figures_are_reported_to_the_metrics_topic(ready: Settings) -> None:
    """Reports every interval while running and one last report on close, keyed by the producer."""
    import orjson

    events = one_of_each() * 5
    with Emitter(EmitterConfig.from_settings(ready, metrics_interval_s=0.2), "reporting-svc") as em:
        for ev in events:
            em.emit(ev)
        assert em.flush(30) == 0
        time.sleep(0.5)  # at least one interval with everything delivered
    assert em.reporter is not None and em.reporter.sent >= 14  # two reports or more, seven figures each
    consume(ready, [ready.topics.inference], 5)
    msgs = consume(ready, [ready.topics.metrics], em.reporter.sent)
    recs = [orjson.loads(m.value()) for m in msgs]
    assert {m.key() for m in msgs} == {b"reporting-svc"}
    assert all(r["labels"] == {"producer": "reporting-svc"} for r in recs)
    names = {r["name"] for r in recs}
    assert {"producer_spool_depth", "producer_spool_bytes", "producer_queue_depth", "producer_events_delivered",
            "producer_events_failed", "producer_delivery_errors", "producer_delivery_latency_p99_seconds"} <= names
    last = {r["name"]: r["value"] for r in recs}  # one key, one partition: the final report comes last
    assert last["producer_events_delivered"] == len(events)
    assert last["producer_spool_depth"] == 0 and last["producer_queue_depth"] == 0
    assert last["producer_events_failed"] == 0
    assert 0 < last["producer_delivery_latency_p99_seconds"] <= 30
