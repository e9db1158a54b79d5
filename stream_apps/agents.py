"""The worker's processing: the model-lineage table, the per-process runtime and the event path.

Batches from the event topics (Avro) and the OpenLineage topic (JSON) are consumed by
:mod:`stream_apps.events` and processed in a child process (:mod:`stream_apps.offload`) by
:class:`Runtime`: validate, split PII, enrich, sample, seal, produce, and only then commit. An
infrastructure failure retries the batch (never committed, never dead-lettered); a bug tripped by
one message dead-letters that message and the rest flows on.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, cast

import faust
import mode
import orjson
import redis
import redis.asyncio

from lineage.codec import Codec
from lineage.keyspace import KeySpace
from lineage.pii.crypto import kek_provider
from lineage.pii.keys import DataKeys
from lineage.pii.store import SnapshotStore
from stream_apps.models import ModelLineage
from stream_apps.events import EventLoop, run_in_thread
from stream_apps.output import OutputProducer
from stream_apps.pipeline import INFRA_ERRORS, BatchResult, InMessage, OutRecord, Pipeline

log = logging.getLogger(__name__)

# Hold index entries, many per call: SET KEYS[i] ARGV[i] PX ARGV[#ARGV] (the same keys, values
# and expiry as one SET per prediction, without a command per prediction).
_INDEX_HOLDS = """
local ttl = ARGV[#ARGV]
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl) end
return #KEYS
"""
_INDEX_CHUNK = 1_000


class Runtime:
    """Per-worker resources (Redis, keys, store, producer, pipeline); built in the pipeline child when it starts."""

    def __init__(self, settings: Any, changelog: str, lookup: Callable[[str], Any]) -> None:
        self.settings = settings
        self.changelog = changelog
        self._lookup = lookup
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)
        self.keys = DataKeys(self.redis, kek_provider(settings), KeySpace.of(settings))
        writer = f"{settings.app_id}-{socket.gethostname()}-{os.getpid()}"
        self.store = SnapshotStore.from_settings(settings, writer)
        self.pipeline = Pipeline(settings, Codec.from_settings(settings), self.keys, self.store, self.lookup)
        self.producer = OutputProducer(settings, client_id=writer)
        self.stats_key = self.keys.space.stats(settings.app_id)
        self._index_holds = self.redis.register_script(_INDEX_HOLDS)

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
        for start in range(0, len(positions), _INDEX_CHUNK):
            chunk = positions[start : start + _INDEX_CHUNK]
            self._index_holds(
                keys=[self.keys.space.hold(pid) for pid, _, _, _ in chunk],
                args=[*(f"{topic}/{partition}/{offset}" for _, topic, partition, offset in chunk), ttl_ms],
                client=pipe,
            )
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
    """Declare the lineage table, the stats page and the event path on ``app``."""
    table = app.GlobalTable(
        "model_lineage",
        default=None,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        partitions=1,
        recovery_buffer_size=1,
        help="model@version -> training run + feature sets (changelog-backed)",
    )

    @app.page("/lineage/stats")
    async def stats(web: Any, request: Any) -> Any:
        """Counters of this deployment (all workers): accepted per class, dead-lettered per reason, tiers."""
        client = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=5)
        try:
            raw = await client.hgetall(KeySpace.of(settings).stats(settings.app_id))
        finally:
            await client.aclose()
        return web.json({(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()})

    changelog = table.changelog_topic.get_topic_name()

    async def _snapshot() -> dict[str, Any]:
        return dict(table.data.items())

    async def _apply(updates: list[tuple[str, dict[str, Any]]]) -> None:
        for key, value in updates:
            table.data[key] = value  # our own worker sees it at once; others via the changelog

    @app.service
    class EventPath(mode.Service):
        """The event path (:mod:`stream_apps.events`), started after table recovery, stopped first."""

        events: EventLoop
        path: asyncio.Future[None]

        async def on_start(self) -> None:
            aio = asyncio.get_running_loop()
            self.events = EventLoop(
                settings,
                changelog,
                snapshot=lambda: asyncio.run_coroutine_threadsafe(_snapshot(), aio).result(60),
                apply=lambda u: asyncio.run_coroutine_threadsafe(_apply(u), aio).result(60),
            )
            self.path = asyncio.ensure_future(run_in_thread(self.events))
            self.path.add_done_callback(self._finished)

        def _finished(self, task: asyncio.Future[None]) -> None:
            if not task.cancelled() and task.exception() is not None and not self.should_stop:
                log.critical("event path failed: %r; stopping the worker", task.exception())
                asyncio.ensure_future(self.crash(cast(BaseException, task.exception())))

        async def on_stop(self) -> None:
            self.events.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self.path), 120)
            except Exception:  # noqa: BLE001 - already logged by _finished / the loop
                pass
