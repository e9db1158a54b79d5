"""Helpers for the sink/query/verify integration tests: run `lineage` as a subprocess, produce records."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import api_token, auth_headers, free_port, wait_until
from lineage.graph import GraphRecord
from lineage.settings import Settings, settings_to_env

REPO = Path(__file__).resolve().parents[2]
LINEAGE = str(REPO / ".venv" / "bin" / "lineage")



def env_for(settings: Settings) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_") or k.startswith("LINEAGE_TEST_")}
    return {**base, **settings_to_env(settings)}


def produce(settings: Settings, records: Iterable[GraphRecord | tuple[bytes, bytes]], partition_of: Any = None) -> int:
    producer = Producer({**settings.kafka_common(), "linger.ms": 20, "acks": "all", "enable.idempotence": True})
    n = 0
    for rec in records:
        key, value = (rec.event_id.encode(), rec.to_bytes()) if isinstance(rec, GraphRecord) else rec
        kwargs: dict[str, Any] = {}
        if partition_of is not None:
            kwargs["partition"] = partition_of(n)
        while True:
            try:
                producer.produce(settings.topics.graph, value=value, key=key, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "producer could not deliver everything"
    return n


def start_sink(settings: Settings, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [LINEAGE, "sink", *args], env=env_for(settings), stdout=log, stderr=subprocess.STDOUT,
        cwd=REPO, start_new_session=True,
    )


def wait_healthy(settings: Settings, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> dict:
    import urllib.request

    def ok() -> dict | None:
        if proc.poll() is not None:
            raise AssertionError(f"sink exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{settings.api_url}/health", timeout=1) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    return wait_until(ok, timeout, "sink /health")


def stop_sink(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def api_sql(settings: Settings, sql: str) -> list[list[Any]]:
    import urllib.request

    req = urllib.request.Request(
        f"{settings.api_url}/api/sql", data=json.dumps({"sql": sql}).encode(),
        headers={"Content-Type": "application/json", **auth_headers(settings)},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["rows"]


def run_cli(settings: Settings, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `lineage ARGS` as a user of this deployment would: with its CLI key (an admin's) in place."""
    api_token(settings)
    res = subprocess.run([LINEAGE, *args], env=env_for(settings), capture_output=True, text=True, cwd=REPO, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"lineage {' '.join(args)} exited {res.returncode}: {res.stderr}{res.stdout}")
    return res


def committed(settings: Settings, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({**settings.kafka_common(), "group.id": "offsets-probe", "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def sink_group(settings: Settings) -> str:
    return f"{settings.app_id}.clickhouse-sink"


_ = (sys, time)


def deployment(stack: Any, data_dir: Path, **overrides: Any) -> Settings:
    """Settings of a private deployment on the session stack (own topics, key space, data dir), topics made."""
    import uuid

    from helpers import make_topics
    from lineage.settings import TopicSettings

    tag = uuid.uuid4().hex[:8]
    settings = stack.settings(data_dir=data_dir, app_id=f"test-{tag}",
                              topics=TopicSettings(prefix=f"t{tag}", openlineage=f"t{tag}.openlineage.events"),
                              **overrides)
    make_topics(settings)
    return settings


@contextlib.asynccontextmanager
async def api_client(settings: Settings, store: Any, mounts: Sequence[Any] = (),
                     policy: Mapping[str, Any] | None = None) -> AsyncIterator[Any]:
    """The sink's own API (real key checks in Redis, real audit trail on Kafka) on ``store``, in
    process; ``mounts`` and ``policy`` add routes and their rules, as the sink service does."""
    import redis
    from aiohttp.test_utils import TestClient, TestServer

    from lineage.keyspace import KeySpace
    from sinks.access.audit import AuditTrail
    from sinks.access.http import Guard
    from sinks.access.keys import ApiKeys
    from sinks.api_server import ApiContext, build_app

    audit = AuditTrail.from_settings(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        app = build_app(ApiContext(settings, store, audit), Guard(ApiKeys(client, KeySpace.of(settings)), settings),
                        mounts=mounts, policy=policy)
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:
            yield http
    finally:
        client.close()
        audit.close()
