"""Helpers for the worker/PII/sampling integration tests (no tests here): worker subprocesses on
the real stack, bulk produce and read-back of topics. Events come from ``factories``."""
from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import free_port
from integration.sink_support import committed, end_offsets
from lineage.codec import Codec
from lineage.pii.sealing import KeyRing, Sealer, seal_record
from lineage.kafka import client_config, produce_and_wait
from lineage.settings import Settings, settings_to_env
from shell.stack.process import ManagedProcess

LINEAGE_BIN = str(Path(sys.executable).parent / "lineage")


@contextmanager
def running_pipeline(settings: Settings, sink_log: Path) -> Iterator[None]:
    """A `lineage sink` (API up) and one worker for ``settings``; on a failed assertion inside,
    their logs are printed before it propagates; both are stopped on exit."""
    from integration.sink_support import start_sink, stop_sink, wait_healthy

    sink = start_sink(settings, sink_log)
    try:
        with running_workers(settings):
            wait_healthy(settings, sink, sink_log)
            yield
    except AssertionError:
        print(worker_logs(settings)[-4000:], sink_log.read_text()[-4000:])
        raise
    finally:
        stop_sink(sink)


@contextmanager
def running_workers(settings: Settings, count: int = 1, name: str = "worker") -> Iterator[list[ManagedProcess]]:
    """``count`` `lineage worker` subprocesses for ``settings``; stopped (SIGTERM) on exit."""
    procs = []
    env = settings_to_env(settings)
    try:
        for i in range(count):
            argv = [LINEAGE_BIN, "worker", "--log-level", "info"]
            proc = ManagedProcess.in_data_dir(Path(settings.data_dir), f"{name}-{i}", argv, env=env)
            proc.start()
            procs.append(proc)
        yield procs
    finally:
        for proc in procs:
            proc.stop(timeout=30)


def producer(settings: Settings) -> Producer:
    return Producer(client_config(settings.kafka_common(), {"linger.ms": 20, "compression.type": "lz4",
                                                         "queue.buffering.max.messages": 1_000_000}))


def produce_all(settings: Settings, items: Iterable[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]]) -> int:
    """Produce (topic, key, value, headers) tuples; waits for every delivery."""
    return produce_and_wait(producer(settings), ((t, k, v, h, 0) for t, k, v, h in items), 60)


def encode_many(settings: Settings, kind: str, records: Iterable[dict[str, Any]], sealed: bool = True) -> list[bytes]:
    """Avro bytes as an emitter writes them: an inference event's PII sealed for the pipeline
    (``sealed=False``: in the clear, as an emitter that does not seal would send it)."""
    codec = Codec.from_settings(settings)
    if kind == "inference" and sealed:
        sealer = Sealer(KeyRing.under(settings.keys_dir).ensure())
        return [codec.encode(kind, seal_record(sealer, dict(r))) for r in records]
    return [codec.encode(kind, r) for r in records]


def read_topic(settings: Settings, topic: str, expect: int, timeout: float = 60.0, idle: float = 0.0) -> list[Any]:
    """Read ``topic`` from the beginning until ``expect`` messages arrived (then ``idle`` seconds more)."""
    c = Consumer({**settings.kafka_common(), "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = c.consume(10_000, timeout=0.5)
            out += [m for m in batch if m.error() is None]
            if len(out) >= expect:
                if quiet_until is None:
                    quiet_until = time.monotonic() + idle
                if time.monotonic() >= quiet_until:
                    break
    finally:
        c.close()
    return out


def header_map(msg: Any) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or [])}


def worker_logs(settings: Settings) -> str:
    logs = Path(settings.data_dir).resolve() / "logs"
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))


def read_to_end(settings: Settings, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every message currently in ``topic`` (up to the high watermarks at call time)."""
    c = Consumer({**settings.kafka_common(), "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10).topics[topic]
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out: list[Any] = []
    pos = {p: 0 for p in ends}
    deadline = time.monotonic() + timeout
    try:
        while any(pos[p] < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout}s")
            for m in c.consume(10_000, timeout=0.5):
                if m.error() is None:
                    out.append(m)
                    pos[m.partition()] = m.offset() + 1
    finally:
        c.close()
    return out


def wait_for_ids(settings: Settings, topic: str, want: set[str], timeout: float) -> list[Any]:
    """Read ``topic`` until every event id in ``want`` is there; on timeout fail with a diagnosis
    (what is missing, the dead-letter reasons, the group's lag per input partition, worker warnings)."""
    deadline = time.monotonic() + timeout
    while True:
        msgs = read_to_end(settings, topic)
        have = {orjson.loads(m.value())["event_id"] for m in msgs}
        if want <= have:
            return msgs
        if time.monotonic() > deadline:
            raise AssertionError(diagnose(settings, len(want - have)))
        time.sleep(2.0)


def diagnose(settings: Settings, missing: int) -> str:
    """A failure report for a pipeline test that waited in vain."""
    t = settings.topics
    reasons = Counter(header_map(m).get("dlq.reason", b"?").decode() for m in read_to_end(settings, t.deadletter))
    parts = t.partitions
    lag = []
    for topic in [*t.event_topics.values(), t.openlineage]:
        done, ends = committed(settings, settings.events_group, topic, parts), end_offsets(settings, topic, parts)
        lag += [f"{topic}[{p}] committed {done[p]} end {end}" for p, end in ends.items() if end and done[p] < end]
    noisy = [ln for ln in worker_logs(settings).splitlines() if "[WARNING]" in ln or "[ERROR]" in ln]
    return (f"{missing} events missing; dead-lettered: {dict(reasons)}; lagging: {lag or 'none'}; "
            f"worker warnings (last 15): " + "\n".join(noisy[-15:]))
