"""The consumer loop: a librdkafka consumer thread feeding the processing child.

Why not a Faust stream: Faust's consumer can skip fetched records across a rebalance (records
fetched in one group generation are dropped in the next without a seek back to them, so their
offsets are never acked, the commit stalls and the events are missing downstream until the next
restart; reproduced by ``tests/integration/test_worker_faults.py`` killing one of two workers),
and its per-event overhead caps a no-op agent at about a fifth of a bare librdkafka loop
(``lineage bench pipeline``). The Faust app still owns the model-lineage table (changelog
recovery, replication to every worker), the alert windows, the timers and the web pages; this
thread only moves bytes.

Guarantee: at-least-once, with consuming and processing overlapped. A consumed batch goes to
processing (:mod:`stream_apps.event_path.child`, or a thread: ``worker.processing``) and the next
one is consumed while it is processed, up to ``worker.max_in_flight`` batches
(:mod:`stream_apps.event_path.inflight`); each is committed once its outputs are confirmed by the
broker and every batch before it is committed. Rebalance callbacks run inside ``consume()``, and
the revoke callback drains the batches in flight and commits them before it returns, so a
partition is never revoked with a batch of it in flight; a crash re-delivers at most the
uncommitted batches, and the sink drops the copies (see :mod:`sinks.clickhouse.writer`).
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
from stream_apps.event_path.inflight import InFlight, Processing, Stopped
from stream_apps.event_path.resources import ChildResources
from stream_apps.event_path.serving import ProcessingThread, tune_gc

log = logging.getLogger(__name__)

BATCH_WITHIN_S = 0.2


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


def open_processing(settings: Settings, changelog: str) -> Processing:
    """The processing side ``worker.processing`` names."""
    if settings.worker.processing == "thread":
        return ProcessingThread(settings, changelog, ChildResources)
    return ProcessingChild(settings, changelog)


class ConsumerLoop:
    """Consume -> process -> commit in order, with up to ``worker.max_in_flight`` batches in
    flight, until :meth:`stop`.

    ``snapshot`` returns the current model-lineage table and ``apply`` writes the batch's table
    updates back; both are called from this thread and must hop to the Faust event loop.
    """

    _inflight: InFlight  # built by :meth:`run`

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
        tune_gc()  # this process too: each batch is thousands of message objects and tuples
        processing = open_processing(self.settings, self.changelog)
        consumer = Consumer(consumer_config(self.settings), logger=log)
        self._inflight = InFlight(processing, self.settings.worker.max_in_flight, self._snapshot, self._apply,
                                  lambda records: self._commit(consumer, records), self._stopping)
        self.totals = self._inflight.totals
        consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked)
        try:
            while not self._stopping.is_set():
                batch = consumer.consume(self.settings.worker.batch_max, timeout=BATCH_WITHIN_S)
                msgs = [m for m in batch if not self._is_error(m)]
                self._inflight.reap()
                if msgs:
                    self._inflight.add(msgs, [_fields(m) for m in msgs])
            self._inflight.drain()  # stopping: finish and commit what is in flight
        finally:
            dropped = self._inflight.drop()  # only after a failure or a stop during a retry: left uncommitted
            log.info("consumer loop stopping; totals this run: %s; batches left uncommitted: %d",
                     dict(self.totals), len(dropped))
            try:
                consumer.close()  # leave the group now: the partitions move without a session timeout
            finally:
                processing.close()

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

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Runs inside ``consume()``: every batch in flight is finished and committed before the
        partitions go. When one fails, it and the later ones stay uncommitted for the next owner;
        partitions kept (incremental rebalancing) are rewound to their first uncommitted record."""
        log.info("consumer loop revoked %d partitions (%d batches in flight)", len(partitions), len(self._inflight))
        dropped = self._inflight.settle()
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        rewind: dict[tuple[str, int], int] = {}
        for batch in dropped:
            for m in batch.records:
                key = (m.topic(), m.partition())
                if key not in revoked:
                    rewind[key] = min(rewind.get(key, m.offset()), m.offset())
        for (topic, partition), offset in rewind.items():
            consumer.seek(TopicPartition(topic, partition, offset))

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
            except Stopped:
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

