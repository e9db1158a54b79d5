"""The agent: batches from the event topics (Avro) and the OpenLineage topic (JSON) through the pipeline.

Faust hazards respected: raw value serializer (we decode), ``noack_take`` with acks only after
the batch's outputs were confirmed by the broker, concurrency 1 (scale with partitions and
workers), no exactly-once. The batch work runs in a child process (:mod:`stream_apps.offload`)
so Faust's consumer and the pipeline each get a core. An infrastructure failure retries the batch (never acked, never
dead-lettered); a bug tripped by one message dead-letters that message and the rest flows on.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, cast

import faust
import orjson
import redis
import redis.asyncio

from lineage.codec import Codec
from sinks.pii.keys import DataKeys, kek_provider, redis_prefix
from sinks.pii.store import SnapshotStore
from stream_apps.models import ModelLineage
from stream_apps.offload import Offload, OffloadRetry
from stream_apps.output import OutputProducer
from stream_apps.pipeline import INFRA_ERRORS, BatchResult, InMessage, OutRecord, Pipeline

log = logging.getLogger(__name__)

BATCH_MAX = 5_000
BATCH_WITHIN_S = 0.2


def _headers(raw: Any) -> list[tuple[str, bytes | None]]:
    if not raw:
        return []
    items = raw.items() if isinstance(raw, Mapping) else raw
    return [(k.decode() if isinstance(k, bytes) else str(k), v) for k, v in items]


class Runtime:
    """Per-worker resources (Redis, keys, store, producer, pipeline); built when the agent starts."""

    def __init__(self, settings: Any, changelog: str, lookup: Callable[[str], Any]) -> None:
        self.settings = settings
        self.changelog = changelog
        self._lookup = lookup
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)
        self.keys = DataKeys(self.redis, kek_provider(settings), redis_prefix(settings))
        writer = f"{settings.app_id}-{socket.gethostname()}-{os.getpid()}"
        self.store = SnapshotStore.from_settings(settings, writer)
        self.pipeline = Pipeline(settings, Codec.from_settings(settings), self.keys, self.store, self.lookup)
        self.producer = OutputProducer(settings, client_id=writer)
        self.stats_key = f"{self.keys.prefix}:stats:{settings.app_id}"

    def lookup(self, key: str) -> ModelLineage | None:
        value = self._lookup(key)
        return cast(ModelLineage, dict(value)) if isinstance(value, Mapping) else None

    def prepare(self, msgs: list[InMessage]) -> BatchResult:
        """CPU stage: validate, split PII, enrich, sample, seal."""
        try:
            return self.pipeline.process(msgs)
        except INFRA_ERRORS:
            raise
        except Exception:  # a bug in the batch stage: isolate the message(s) that trip it
            return self._one_by_one(msgs)

    def deliver(self, result: BatchResult) -> None:
        """I/O stage: produce + wait for every ack, then index holds and count."""
        records = list(result.records)
        records += [OutRecord(self.changelog, orjson.dumps(k), orjson.dumps(v), None) for k, v in result.table_updates]
        hold = self.settings.topics.pii_hold
        positions = self.producer.send(records, track_topic=hold)
        pipe = self.redis.pipeline(transaction=False)
        ttl_ms = self.settings.sampling.hold_retention_ms
        for pid, topic, partition, offset in positions:
            pipe.set(f"{self.keys.prefix}:pii:hold:{pid}", f"{topic}/{partition}/{offset}", px=ttl_ms)
        for name, count in result.counters.items():
            pipe.hincrby(self.stats_key, name, count)
        pipe.execute()

    def _one_by_one(self, msgs: list[InMessage]) -> BatchResult:
        merged = BatchResult()
        for msg in msgs:
            try:
                part = self.pipeline.process([msg])
            except INFRA_ERRORS:
                raise
            except Exception as exc:
                log.error("message %s[%d]@%d tripped %s; dead-lettered", msg.topic, msg.partition, msg.offset, type(exc).__name__)
                part = self.pipeline.reject(msg, "internal_error", f"{type(exc).__name__} in the batch stage")
            merged.records += part.records
            merged.counters.update(part.counters)
            merged.table_updates += part.table_updates
        return merged

    def close(self) -> None:
        self.producer.close()
        self.redis.close()


def register(app: faust.App, settings: Any) -> None:
    """Declare the lineage table and the processing agent on ``app``."""
    table = app.GlobalTable(
        "model_lineage",
        default=None,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        partitions=1,
        recovery_buffer_size=1,
        help="model@version -> training run + feature sets (changelog-backed)",
    )
    t = settings.topics
    topic = app.topic(
        *t.event_topics.values(),
        t.openlineage,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )

    @app.page("/lineage/stats")
    async def stats(web: Any, request: Any) -> Any:
        """Counters of this deployment (all workers): accepted per class, dead-lettered per reason, tiers."""
        client = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=5)
        try:
            raw = await client.hgetall(f"{redis_prefix(settings)}:stats:{settings.app_id}")
        finally:
            await client.aclose()
        return web.json({(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()})

    @app.agent(topic, concurrency=1, name="process_events")
    async def process_events(stream: Any) -> None:  # faust.Stream; StreamT lacks noack_take
        offload = Offload(settings, table.changelog_topic.get_topic_name())
        loop = asyncio.get_running_loop()
        totals: Counter[str] = Counter()
        try:
            async for events in stream.noack_take(BATCH_MAX, within=BATCH_WITHIN_S):
                msgs = [
                    InMessage(
                        e.message.topic,
                        e.message.partition,
                        e.message.offset,
                        e.message.key,
                        e.message.value,
                        _headers(e.message.headers),
                    )
                    for e in events
                ]
                delay = 0.5
                while True:
                    try:
                        counters, updates = await loop.run_in_executor(None, offload.call, msgs, dict(table.data.items()))
                        break
                    except OffloadRetry as exc:
                        log.warning("batch of %d not processed (%s); retrying in %.1fs", len(msgs), exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 10.0)
                for key, value in updates:
                    table.data[key] = value  # our own worker sees it at once; others via the changelog
                for event in events:
                    await stream.ack(event)
                totals.update(counters)
        finally:
            log.info("process_events stopping; totals this run: %s", dict(totals))
            await loop.run_in_executor(None, offload.close)
