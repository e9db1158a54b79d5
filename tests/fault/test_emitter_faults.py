"""Emitter fault tests on real brokers: (a) broker stopped while 100,000 events are emitted ->
all arrive once it is back, none duplicated; (b) the emitting process is SIGKILLed mid-stream ->
the next process replays its spool and nothing whose emit() returned is lost."""
from __future__ import annotations

import mmap
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from factories import sdk_event
from helpers import free_port, make_topics, wait_until
from integration.sink_support import api_sql, start_sink, stop_sink, wait_healthy
from integration.worker_support import running_workers
from lineage.codec import Codec
from lineage.pii.sealing import KeyRing
from lineage.settings import ProducerSettings, Settings, StackSettings, TopicSettings
from shell.stack.kafka import KafkaCluster
from producers import Emitter, EmitterConfig, InferenceEvent

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
N_OUTAGE = 100_000



def read_all(settings: Settings, topic: str, expect: int, timeout: float) -> list[bytes]:
    """Values of every message in ``topic`` once at least ``expect`` arrived (then one idle second)."""
    c = Consumer({**settings.kafka_common(), "group.id": f"r-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    quiet = None
    try:
        while time.monotonic() < deadline:
            batch = c.consume(10_000, 0.5)
            out += [m.value() for m in batch if m.error() is None]
            if len(out) >= expect:
                quiet = quiet or time.monotonic() + 1.0
                if time.monotonic() >= quiet:
                    break
    finally:
        c.close()
    return out


def event(i: int) -> InferenceEvent:
    return sdk_event("inference", producer="https://x/fraud-api", model_version=str(i % 3), prediction_id=f"p-{i}",
                     decision_type="approve", risk_score=0.1, subject_id=f"cust-{i % 1000}", regulatory_class=None,
                     feature_snapshot=None)


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    """A one-node KRaft cluster of our own, so stopping it disturbs nothing else."""
    stack = StackSettings(kafka_port=free_port(), kafka_controller_port=free_port(), kafka_heap="512m")
    cluster = KafkaCluster(tmp_path / "kafka-private", stack, brokers=1)
    cluster.start(timeout=120)
    try:
        yield cluster
    finally:
        for proc in cluster.processes():
            proc.stop(timeout=20)


def test_broker_outage_100k_events_all_arrive_once(
    private_cluster: KafkaCluster, stack: Any, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    s = Settings(data_dir=tmp_path / "data", kafka_bootstrap=private_cluster.bootstrap, redis_url=stack.redis_url,
                 app_id=f"outage-{tag}", api_port=free_port(),
                 topics=TopicSettings(prefix=f"o{tag}"),
                 producer=ProducerSettings(queue_size=5_000, spool_fsync="batch"))
    make_topics(s)
    KeyRing.under(s.keys_dir).ensure()  # the pipeline's seal key, as `lineage stack up` makes it
    # short message timeout: deliveries fail during the outage, so the spool's replay path runs too
    em = Emitter(EmitterConfig.from_settings(s).with_kafka_config({"message.timeout.ms": 5000}), "outage")
    try:
        em.emit(event(-1))
        assert em.flush(60) == 0  # connected, producer id acquired
        assert private_cluster.stop_node(1)
        ids = [em.emit(event(i)) for i in range(N_OUTAGE)]  # never blocks, never raises
        wait_until(lambda: not em.stats.broker_up or em.stats.delivery_errors, 60, "the emitter to notice the outage")
        assert em.spool.depth >= N_OUTAGE - 5_000
        time.sleep(6)  # past message.timeout.ms: queued deliveries fail and fall back to the spool
        private_cluster.start_node(1, timeout=120)
        assert em.flush(240) == 0, em.metrics()
        snap = em.metrics()
    finally:
        em.close(timeout=5)
    assert snap["delivered"] >= N_OUTAGE + 1 and snap["failed"] == 0
    assert snap["broker_up"]  # the gauge comes back with the first delivery after the outage
    values = read_all(s, s.topics.inference, N_OUTAGE + 1, timeout=120)
    codec = Codec()
    got = [codec.decode(v).record["event_id"] for v in values]
    assert set(ids) <= set(got)
    assert len(set(got)) == N_OUTAGE + 1
    # at-least-once: a replay may repeat an event on the topic; the sink deduplicates on event_id
    print(f"topic copies: {len(got)} for {len(set(got))} distinct events; replays: {snap['replays']}")

    # ... and through the worker and the sink: every prediction exactly once in ClickHouse
    log = tmp_path / "sink.log"
    sink = start_sink(s, log)
    try:
        with running_workers(s):
            wait_healthy(s, sink, log)

            def stored() -> bool:
                rows = api_sql(s, "SELECT count(), uniqExact(event_id) FROM inference_lineage FINAL")
                return int(rows[0][1]) >= N_OUTAGE + 1

            wait_until(stored, 240, f"{N_OUTAGE + 1} predictions in ClickHouse", interval=2.0)
            (total, distinct), = api_sql(s, "SELECT count(), uniqExact(event_id) FROM inference_lineage FINAL")
            dup_edges = api_sql(s, "SELECT count() FROM (SELECT src, dst, edge_type, event_id FROM edges FINAL "
                                   "GROUP BY src, dst, edge_type, event_id HAVING count() > 1)")[0][0]
    finally:
        stop_sink(sink)
    assert int(total) == int(distinct) == N_OUTAGE + 1
    assert int(dup_edges) == 0


CHILD = textwrap.dedent("""
    import mmap, os, struct, sys
    from producers import Emitter, EmitterConfig, InferenceEvent
    counter = mmap.mmap(os.open(sys.argv[1], os.O_RDWR), 8)
    em = Emitter(EmitterConfig.from_env(), "killed")
    i = 0
    while True:
        em.emit(InferenceEvent(producer="p", endpoint="e", model_name="m", model_version="1",
                               prediction_id=f"p-{i}", decision_type="approve", risk_score=0.5, subject_id="s"))
        i += 1
        struct.pack_into("<Q", counter, 0, i)  # survives SIGKILL: shared mapping
""")


def test_sigkill_mid_stream_spool_replays_everything(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    s = settings_factory()
    make_topics(s)
    from lineage.settings import settings_to_env

    counter_path = tmp_path / "counter"
    counter_path.write_bytes(b"\0" * 8)
    counter = mmap.mmap(os.open(counter_path, os.O_RDWR), 8)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}, **settings_to_env(s)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(counter_path)], cwd=REPO, env=env)
    try:
        wait_until(lambda: struct.unpack_from("<Q", counter, 0)[0] >= 30_000 or child.poll() is not None, 120,
                   "the child to emit 30,000 events")
        assert child.poll() is None, "the emitting child died on its own"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    emitted = struct.unpack_from("<Q", counter, 0)[0]
    assert emitted >= 30_000
    with Emitter(EmitterConfig.from_settings(s), "killed") as again:
        recovered = again.spool.recovered
        assert again.flush(120) == 0
    assert recovered > 0, "the kill left nothing in the spool: the test did not exercise a replay"
    values = read_all(s, s.topics.inference, emitted, timeout=120)
    codec = Codec()
    got = {codec.decode(v).record["prediction_id"] for v in values}
    missing = [i for i in range(emitted) if f"p-{i}" not in got]
    assert not missing, f"{len(missing)} of {emitted} emitted events lost, e.g. {missing[:5]}"
    print(f"emitted {emitted}, {recovered} replayed from the spool, {len(values)} messages on the topic")
