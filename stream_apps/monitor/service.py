"""The queue-depth monitor: samples lag, reads the metrics topic, evaluates and fires alerts.

It runs inside the sink process (started by the dashboard's route provider), not in the stream
workers: lag must be measured and alerted on precisely when the workers are stalled, paused or
down. Only one monitor per pipeline evaluates (a Redis lease); any other keeps sampling for its
own dashboard. Every sample is also published on the metrics topic, so ClickHouse stores lag,
throughput and dead-letter counts at a fixed resolution (`sample_interval_s`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import orjson
import redis.asyncio as aioredis

from lineage.exceptions import LineageError
from lineage.keyspace import KeySpace
from lineage.metric_records import metric_record
from lineage.settings import Settings
from stream_apps.alerts.config import AlertSettings, alert_settings
from stream_apps.alerts.engine import AlertEngine, build_engine
from stream_apps.alerts.model import Alert
from stream_apps.monitor.kafka_io import AckedProducer, TailReader
from stream_apps.monitor.lag import LagSampler, Sample
from stream_apps.monitor.series import Series, labels_key

log = logging.getLogger(__name__)

LAG_ALERT = "ConsumerLagHigh"
SPOOL_ALERT = "ProducerSpoolDeep"
DLQ_ALERT = "DeadLetterRateHigh"
MONITOR_ALERTS = (LAG_ALERT, SPOOL_ALERT, DLQ_ALERT)


class Monitor:
    def __init__(self, settings: Settings, redis: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.cfg: AlertSettings = alert_settings(settings)
        self.redis = redis or aioredis.from_url(settings.redis_url)
        conf = settings.kafka_common()  # each client adds its role defaults (lineage.kafka)
        self.sampler = LagSampler(conf, settings.topics.prefix, self.cfg.lag_groups)
        self.producer = AckedProducer(conf)
        self.tail: TailReader | None = None
        self.engine: AlertEngine = build_engine(settings, self._send_alert, self.redis)
        self.series = Series(maxlen=self.cfg.metrics_retention_points)
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self.above_since: dict[tuple[str, str, int], float] = {}
        self.last_sample: Sample | None = None
        self.prev_sample: Sample | None = None
        self.dlq_history: list[tuple[float, int]] = []
        self.spool: dict[tuple[tuple[str, str], ...], tuple[float, float]] = {}
        self.errors = 0
        self.ticks = 0
        self.leader = False
        self.ident = f"{socket.gethostname()}:{os.getpid()}"
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="lineage-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.tail is not None:
            await asyncio.to_thread(self.tail.close)

    async def run(self) -> None:
        self.tail = TailReader(self.settings.kafka_common(), self.settings.topics.metrics, self.settings.app_id)
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except (LineageError, OSError, aioredis.RedisError) as exc:
                self.errors += 1
                log.error("monitor tick failed (will retry): %s", exc)
            await asyncio.sleep(max(0.05, self.cfg.sample_interval_s - (time.monotonic() - started)))

    async def _send_alert(self, key: bytes, value: bytes) -> None:
        await self.producer.send(self.settings.topics.alerts, key, value)

    async def _lease(self) -> bool:
        key = KeySpace.of(self.settings).monitor_leader()
        ttl = int(max(3 * self.cfg.sample_interval_s, 5) * 1000)
        if await self.redis.set(key, self.ident, nx=True, px=ttl):
            return True
        cur = await self.redis.get(key)
        if cur is not None and (cur.decode() if isinstance(cur, bytes) else cur) == self.ident:
            await self.redis.pexpire(key, ttl)
            return True
        return False

    # --- one tick -------------------------------------------------------------------------------

    async def tick(self) -> None:
        sample = await asyncio.to_thread(self.sampler.sample)
        self.prev_sample, self.last_sample = self.last_sample, sample
        self.ticks += 1
        records = self._record_sample(sample)
        await self._read_metrics_topic()
        await self.producer.send_many([(self.settings.topics.metrics, None, r) for r in records])
        self.leader = await self._lease()
        if self.leader:
            await self._evaluate(sample)
            await self.engine.tick()

    def _count(self, name: str, labels: dict[str, str], inc: float) -> None:
        per = self.counters.setdefault(name, {})
        key = labels_key(labels)
        per[key] = per.get(key, 0.0) + inc

    def _record_sample(self, s: Sample) -> list[bytes]:
        out: list[bytes] = []
        t = self.settings.topics
        seen = set()
        for p in s.lag:
            labels = {"group": p.group, "topic": p.topic, "partition": str(p.partition)}
            seen.add(labels_key(labels))
            self.series.add("consumer_lag", labels, s.ts, p.lag)
            out.append(metric_record("consumer_lag", labels, s.ts, p.lag))
        self.series.drop("consumer_lag", seen)
        topics = sorted({topic for topic, _ in s.high})
        prev = self.prev_sample
        for topic in topics:
            total = s.topic_high(topic)
            self.series.add("topic_offset", {"topic": topic}, s.ts, total)
            if prev is not None and s.ts > prev.ts:
                rate = max(0, total - prev.topic_high(topic)) / (s.ts - prev.ts)
                self.series.add("topic_messages_per_second", {"topic": topic}, s.ts, rate)
                out.append(metric_record("topic_messages_per_second", {"topic": topic}, s.ts, rate))
        dlq_total = s.topic_high(t.deadletter)
        self.dlq_history.append((s.ts, dlq_total))
        horizon = s.ts - max(self.cfg.lag_window_s, self.cfg.sample_interval_s) - self.cfg.sample_interval_s
        self.dlq_history = [h for h in self.dlq_history if h[0] >= horizon]
        self.series.add("deadletter_total", {}, s.ts, dlq_total)
        out.append(metric_record("deadletter_total", {}, s.ts, dlq_total))
        if prev is not None and s.ts > prev.ts:
            rate = max(0, dlq_total - prev.topic_high(t.deadletter)) / (s.ts - prev.ts)
            self.series.add("deadletter_per_second", {}, s.ts, rate)
            out.append(metric_record("deadletter_per_second", {}, s.ts, rate))
        return out

    async def _read_metrics_topic(self) -> None:
        """Worker window stats, latency, tier counts and producer spool reports."""
        assert self.tail is not None
        for raw in await self.tail.poll():
            try:
                rec = orjson.loads(raw)
                name, value = str(rec["name"]), float(rec["value"])
                labels = {str(k): str(v) for k, v in (rec.get("labels") or {}).items()}
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self._count("monitor_bad_metric_records", {}, 1)
                continue
            now = time.time()
            if name == "producer_spool_depth":
                self.spool[labels_key(labels)] = (now, value)
                self.series.add(name, labels, now, value)
            elif name in ("sampling_tier_events", "graph_events"):
                self._count(name, {k: v for k, v in labels.items() if k != "worker"}, value)
                self.series.add(name, labels, now, value)
            elif name in ("e2e_latency_seconds", "inference_window_events", "inference_window_lineage_share",
                          "consequential_window_uncaptured", "consequential_window_events"):
                self.series.add(name, labels, now, value)

    # --- alert evaluation -----------------------------------------------------------------------

    async def _evaluate(self, s: Sample) -> None:
        cfg = self.cfg
        holding: list[Alert] = []
        current = set()
        for p in s.lag:
            key = (p.group, p.topic, p.partition)
            current.add(key)
            if p.lag > cfg.lag_threshold:
                since = self.above_since.setdefault(key, s.ts)
                if s.ts - since >= cfg.lag_window_s:
                    holding.append(
                        Alert.firing(
                            LAG_ALERT,
                            {"group": p.group, "topic": p.topic, "partition": str(p.partition)},
                            f"consumer group {p.group} lags {p.lag} messages on {p.topic} partition {p.partition} "
                            f"(threshold {cfg.lag_threshold}, sustained {s.ts - since:.0f}s)",
                            "critical",
                            p.lag,
                            source="monitor",
                        )
                    )
            else:
                self.above_since.pop(key, None)
        for key in [k for k in self.above_since if k not in current]:
            del self.above_since[key]
        for lk, (ts, depth) in self.spool.items():
            labels = dict(lk)
            if depth > cfg.spool_threshold and s.ts - ts < max(cfg.lag_window_s, 3 * cfg.sample_interval_s, 60):
                who = labels.get("producer") or labels.get("service") or ",".join(f"{k}={v}" for k, v in lk)
                holding.append(
                    Alert.firing(SPOOL_ALERT, labels, f"producer {who} has {depth:.0f} events spooled on disk "
                                 f"(threshold {cfg.spool_threshold})", "warning", depth, source="monitor")
                )
        if len(self.dlq_history) >= 2:
            window = max(cfg.lag_window_s, cfg.sample_interval_s)
            base = next((h for h in self.dlq_history if s.ts - h[0] <= window + 1e-6), self.dlq_history[0])
            t0, c0 = base
            t1, c1 = self.dlq_history[-1]
            if t1 - t0 >= window * 0.9 and t1 > t0:
                rate = (c1 - c0) / (t1 - t0)
                if rate > cfg.dlq_rate_threshold:
                    topic = self.settings.topics.deadletter
                    holding.append(
                        Alert.firing(DLQ_ALERT, {"topic": topic}, f"{rate:.2f} dead letters/s on {topic} over "
                                     f"{t1 - t0:.0f}s (threshold {cfg.dlq_rate_threshold}/s)", "warning", rate,
                                     source="monitor")
                    )
        for alert in holding:
            await self.engine.fire(alert)
        await self.engine.resolve_absent(MONITOR_ALERTS, {a.fingerprint for a in holding})
