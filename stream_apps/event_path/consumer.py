"""The consumer loop: a librdkafka consumer thread feeding the processing child.

Why not a Faust stream: Faust's consumer can skip fetched records across a rebalance (records
fetched in one group generation are dropped in the next without a seek back to them, so their
offsets are never acked, the commit stalls and the events are missing downstream until the next
restart; reproduced by ``tests/integration/test_worker_faults.py`` killing one of two workers),
and its per-event overhead caps a no-op agent at about a fifth of a bare librdkafka loop
(``lineage bench pipeline``). The Faust app still owns the model-lineage table (changelog
recovery, replication to every worker), the alert windows, the timers and the web pages; this
thread only moves bytes.

Guarantee: at-least-once with a synchronous loop. A batch is consumed, processed by the
processing child (:mod:`stream_apps.event_path.child`), its outputs are confirmed by the broker,
then its offsets are committed synchronously, and only then is the next batch consumed. Rebalance
callbacks run inside ``consume()``, so a partition is never revoked with a batch in flight; a
crash re-delivers at most the uncommitted batch, and the sink drops the copies (see
:mod:`sinks.clickhouse.writer`).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, cast

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, TopicPartition

from lineage.kafka import MANUAL_COMMIT_CONSUMER, client_config
from lineage.settings import Settings
from stream_apps.alerts.watermarks import encode_watermark
from stream_apps.event_path.batch import InMessageFields
from stream_apps.event_path.child import ProcessingChild
from stream_apps.exceptions import BatchNotProcessed

log = logging.getLogger(__name__)

BATCH_MAX = 5_000
BATCH_WITHIN_S = 0.2
RETRY_MAX_S = 10.0


def consumer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka options of the consumer loop (user options from ``kafka_config`` win)."""
    return client_config(settings.kafka_common(), {
        **MANUAL_COMMIT_CONSUMER,
        "group.id": settings.events_group,
        "client.id": f"{settings.app_id}-events",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 3_000,
        "max.poll.interval.ms": 600_000,
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 65_536,
    })


class ConsumerLoop:
    """Consume -> process in the processing child -> commit, one batch at a time, until :meth:`stop`.

    ``snapshot`` returns the current model-lineage table and ``apply`` writes the batch's table
    updates back; both are called from this thread and must hop to the Faust event loop.
    """

    def __init__(
        self,
        settings: Settings,
        changelog: str,
        snapshot: Callable[[], Mapping[str, Any]],
        apply: Callable[[list[tuple[str, dict[str, Any]]]], None],
    ) -> None:
        self.settings = settings
        self.changelog = changelog
        self._snapshot = snapshot
        self._apply = apply
        self._stopping = threading.Event()
        self.totals: Counter[str] = Counter()
        self._watermarks: dict[tuple[str, int], int] = {}  # (topic, partition) -> latest record timestamp, ms
        t = settings.topics
        self.topics = [*t.event_topics.values(), t.openlineage]

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        child = ProcessingChild(self.settings, self.changelog)
        consumer = Consumer(consumer_config(self.settings), logger=log)
        consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked)
        try:
            while not self._stopping.is_set():
                batch = consumer.consume(BATCH_MAX, timeout=BATCH_WITHIN_S)
                msgs = [m for m in batch if not self._is_error(m)]
                if not msgs:
                    continue
                self._process(child, [_fields(m) for m in msgs])
                self._commit(consumer, msgs)
        finally:
            log.info("consumer loop stopping; totals this run: %s", dict(self.totals))
            try:
                consumer.close()  # leave the group now: the partitions move without a session timeout
            finally:
                child.close()

    def _process(self, child: ProcessingChild, msgs: list[InMessageFields]) -> None:
        delay = 0.5
        while True:
            try:
                counters, updates = child.process(msgs, self._snapshot())
                break
            except BatchNotProcessed as exc:
                # Infrastructure trouble (Redis, broker): retried until it works; never skipped.
                # Stopping here leaves the batch uncommitted, so the next owner re-processes it.
                log.warning("batch of %d not processed (%s); retrying in %.1fs", len(msgs), exc, delay)
                if self._stopping.wait(delay):
                    raise _Stopped from None
                delay = min(delay * 2, RETRY_MAX_S)
        if updates:
            self._apply(updates)
        self.totals.update(counters)

    def _commit(self, consumer: Consumer, msgs: list[Any]) -> None:
        """Commit past ``msgs``; each partition's commit carries its event-time watermark (the
        latest record timestamp processed there), which window evaluation waits on."""
        ends: dict[tuple[str, int], int] = {}
        for m in msgs:
            key = (m.topic(), m.partition())
            ends[key] = max(ends.get(key, -1), m.offset() + 1)
            kind, ts = m.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE:
                self._watermarks[key] = max(self._watermarks.get(key, 0), ts)
        offsets = [TopicPartition(t, p, o, metadata=encode_watermark(self._watermarks[(t, p)])
                                  if (t, p) in self._watermarks else None) for (t, p), o in ends.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. the group is rebalancing: the outputs are written; whoever owns the partitions
            # next re-processes from the last commit and the copies are de-duplicated downstream.
            log.warning("offset commit failed (%s); the batch may be re-delivered", exc.args[0])

    @staticmethod
    def _is_error(msg: Any) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            log.debug("event topic not there yet: %s", err)
        else:
            log.warning("consumer error: %s", err)
        return True

    @staticmethod
    def _assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("consumer loop assigned %d partitions", len(partitions))

    @staticmethod
    def _revoked(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Nothing in flight here (callbacks run inside consume()); every finished batch was
        # committed before the next consume() call.
        log.info("consumer loop revoked %d partitions", len(partitions))

    async def run_in_thread(self) -> None:
        """Run :meth:`run` on its own thread until it returns (or raises)."""
        aio = asyncio.get_running_loop()
        done: asyncio.Future[None] = aio.create_future()

        def finish(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def target() -> None:
            try:
                self.run()
            except _Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                aio.call_soon_threadsafe(finish, exc)
                return
            aio.call_soon_threadsafe(finish, None)

        threading.Thread(target=target, name="lineage-consumer-loop", daemon=True).start()
        await done


def _fields(m: Message) -> InMessageFields:
    """A consumed record (never an error record) as it crosses the pipe to the processing child."""
    raw = cast("list[tuple[str, bytes | None]] | None", m.headers())  # librdkafka: a list of pairs, or None
    headers = [(k, v if v is None or isinstance(v, bytes) else str(v).encode()) for k, v in raw] if raw else []
    return (cast(str, m.topic()), cast(int, m.partition()), cast(int, m.offset()), m.key(), m.value(), headers)


class _Stopped(Exception):
    """Shutdown during a retry loop; the batch stays uncommitted."""
