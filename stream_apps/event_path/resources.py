"""What the processing child builds once: Redis, data keys, snapshot store, output producer, batch processor.

:meth:`ChildResources.deliver` is the I/O half of a batch: produce every output record (with the
batch's window feed, :mod:`stream_apps.alerts.feed`) and wait for the broker's acks, then index
the held snapshots and add the batch's counters in Redis.
Nothing here survives a restart of the child: state is in Redis, the store and the table.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import orjson
import redis

from lineage.codec import Codec
from lineage.keyspace import KeySpace
from lineage.pii.keys import DataKeys
from lineage.pii.sealing import KeyRing
from lineage.pii.store import SnapshotStore
from lineage.settings import Settings
from lineage.deadletters import prune_deadletter_keys
from lineage.topics import window_counts_topic
from stream_apps.alerts.feed import completeness_window, feed_records
from stream_apps.event_path.batch import BatchResult, OutRecord
from stream_apps.event_path.output import OutputProducer
from stream_apps.event_path.processor import BatchProcessor
from stream_apps.flagged import FlaggedSubjects
from stream_apps.models import ModelLineage
from stream_apps.runstate import RunStates

# Hold index entries, many per call: SET KEYS[i] ARGV[i] PX ARGV[#ARGV] (the same keys, values
# and expiry as one SET per prediction, without a command per prediction).
_INDEX_HOLDS = """
local ttl = ARGV[#ARGV]
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl) end
return #KEYS
"""
_INDEX_CHUNK = 1_000


class ChildResources:
    """The processing child's resources; ``lookup`` reads its copy of the model-lineage table."""

    def __init__(self, settings: Settings, changelog: str, lookup: Callable[[str], Any]) -> None:
        self.settings = settings
        self.changelog = changelog
        self._lookup = lookup
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)
        space = KeySpace.of(settings)
        self.keys = DataKeys.from_settings(settings, self.redis)
        writer = f"{settings.app_id}-{socket.gethostname()}-{os.getpid()}"
        self.store = SnapshotStore.from_settings(settings, writer)
        ring = KeyRing.under(settings.keys_dir)
        ring.ensure()  # the first worker of a new deployment makes the pipeline's seal key
        self.processor = BatchProcessor(
            settings,
            Codec.from_settings(settings),
            self.keys,
            self.store,
            RunStates(self.redis, space),
            FlaggedSubjects(self.redis, space),
            self.lookup,
            seal_keys=ring,
        )
        self._pruned_at = 0.0
        self.prune_deadletter_keys()
        self.producer = OutputProducer(settings, client_id=writer)
        self.stats_key = space.stats(settings.app_id)
        self._index_holds = self.redis.register_script(_INDEX_HOLDS)
        self.feed_topic = window_counts_topic(settings)
        self.window = completeness_window(settings.alerts)

    def lookup(self, key: str) -> ModelLineage | None:
        value = self._lookup(key)
        return cast(ModelLineage, dict(value)) if isinstance(value, Mapping) else None

    def deliver(self, result: BatchResult) -> None:
        """Produce + wait for every ack (table updates go to the changelog too, the windows' facts to the
        window feed), then index holds and count."""
        records = list(result.records)
        records += [OutRecord(self.changelog, orjson.dumps(k), orjson.dumps(v), None) for k, v in result.table_updates]
        records += feed_records(self.feed_topic, self.window, result.facts, time.time())
        hold = self.settings.topics.pii_hold
        positions = self.producer.send(records, track_topic=hold)
        pipe = self.redis.pipeline(transaction=False)
        ttl_ms = self.settings.sampling.hold_retention_ms
        space = self.keys.space
        for start in range(0, len(positions), _INDEX_CHUNK):
            chunk = positions[start : start + _INDEX_CHUNK]
            self._index_holds(
                keys=[space.hold(pid) for pid, _, _, _ in chunk],
                args=[*(f"{topic}/{partition}/{offset}" for _, topic, partition, offset in chunk), ttl_ms],
                client=pipe,
            )
        for name, count in result.counters.items():
            pipe.hincrby(self.stats_key, name, count)
        pipe.execute()
        self.prune_deadletter_keys()

    def prune_deadletter_keys(self) -> int:
        """Destroy dead-letter keys past their retention, at most hourly (:func:`prune_deadletter_keys`)."""
        now = time.time()
        if now - self._pruned_at < 3600:
            return 0
        self._pruned_at = now
        pii = self.settings.pii
        return prune_deadletter_keys(self.keys, now, pii.deadletter_key_retention_days, pii.deadletter_key_days)

    def close(self) -> None:
        self.producer.close()
        self.redis.close()
