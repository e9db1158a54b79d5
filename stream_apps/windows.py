"""Completeness detection from stream windows: the Faust tables, agents and timers.

Evaluated by a timer, not `on_window_close`. This module is the thin Faust layer (tables, topics,
Redis, the alert engine); what is decided lives in plain classes in :mod:`stream_apps.detectors`
and the completeness rules in :mod:`stream_apps.alerts.completeness`.

The windows read the window feed (:mod:`stream_apps.alerts.feed`), never the graph topic: the
event path produces, with each batch's graph records and before it commits the batch's input,
the batch's counters summed per model and window (keyed by model, stamped with an event time of
that window) and one batch record (its run events, figures and emitters). So one model's counts
all land on one partition, and the per-model figures are exact however partitions are spread.
``count_windows`` reads the feed:

* counters go to a tumbling (or hopping) windowed table keyed ``"<metric>|<label>|<partition>"``
  (the partition keeps every key on the changelog partition it is written from, so a restarted
  worker recovers exact counts);
* run events go to a table of runs that STARTed (keyed ``"<run_id>|<partition>"``); terminal
  events are recorded in Redis (a run's START and COMPLETE usually come in different batches, so
  on different partitions), and so are emitter last-seen times (heartbeat), so "silent" means
  silent for all workers;
* the batch's figures go to this worker's stream metrics.

An ``@app.timer`` scans the tables' stores, restricted to the partitions this worker actively
owns (standby replicas are skipped) and not while a rebalance or table recovery is under way
(counts may be partial then): every window that closed within `eval_horizon` and that the
watermark gate released (:mod:`stream_apps.alerts.watermarks`: every partition upstream of the
window caught up with its end, or the bounded wait expired) is evaluated (including windows
recovered from the changelog after a restart, which Faust never expires by itself), and runs past their deadline are checked. Alerts are fired through the
Redis-backed engine (exactly one notification across workers); window alerts no one re-asserts
for `stale_after_s` resolve. Predictions stored before their version's training lineage are
counted per version and evaluated against the model-lineage table as it is now, so a closed
window re-evaluated after that lineage arrived stops asserting UnknownModelVersion,
ConsequentialNotCaptured and InferenceLineageIncomplete for them (they resolve), and its
figures are published again with the corrected values. Stale entries are deleted in-stream (deletes must happen in the
partition's own event context); the evaluation horizon keeps any leftover from re-alerting.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis
from confluent_kafka import KafkaException

from lineage.keyspace import KeySpace
from lineage.metric_records import metric_record, rfc3339
from lineage.settings import Settings
from lineage.topics import window_counts_retention_ms, window_counts_topic
from stream_apps.alerts.completeness import (
    RUN_ALERT,
    SILENT_ALERT,
    STREAM_ALERT,
    WINDOW_ALERTS,
    Point,
    Windows,
    count_key,
    evaluate_windows,
    heartbeat_alerts,
)
from stream_apps.alerts.config import alert_settings
from stream_apps.alerts.engine import AlertEngine, build_engine
from stream_apps.alerts.feed import FeedEntry, completeness_window, read_entry
from stream_apps.alerts.model import Alert
from stream_apps.alerts.progress import ProgressReader
from stream_apps.alerts.watermarks import Progress, WatermarkGate
from stream_apps.detectors import (
    ClosedWindows,
    HeartbeatThrottle,
    RunEnd,
    RunTracker,
    StreamStats,
    StreamUpdate,
    WindowStatLog,
)

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings) -> None:
    """Declare the completeness tables, the detection agents and the evaluation timers on `app`."""
    cfg = alert_settings(settings)
    parts = settings.topics.partitions
    counts_table = app.Table(
        "alert-window-counts", default=int, partitions=parts,
        help="completeness counters per window, key metric|label|partition (partition of the window feed)",
    )
    counts = counts_table.using_window(completeness_window(cfg)).relative_to_stream()
    runs_table = app.Table("alert-open-runs", default=None, partitions=parts, help="run_id|partition -> START")
    feed = app.topic(window_counts_topic(settings), internal=True, partitions=parts, key_type=bytes,
                     value_type=bytes, key_serializer="raw", value_serializer="raw", allow_empty=True,
                     retention=timedelta(milliseconds=window_counts_retention_ms(settings)))
    alerts_topic = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")
    metrics_topic = app.topic(settings.topics.metrics, key_serializer="raw", value_serializer="raw")
    space = KeySpace.of(settings)
    redis = aioredis.from_url(settings.redis_url)
    runs = RunTracker(runs_table, runs_table.data, cfg)
    windows = ClosedWindows(counts_table, counts_table.data, cfg)
    heartbeats = HeartbeatThrottle()
    stat_log = WindowStatLog(cfg.window_retention_s)
    stats = StreamStats(f"{socket.gethostname()}:{os.getpid()}")
    gate = WatermarkGate(cfg.window_grace_s, cfg.watermark_wait_s)
    owned: set[int] = set()  # the feed partitions the gate's held windows were read for
    progress = ProgressReader(settings.kafka_common(), settings.topics.inference, window_counts_topic(settings),
                              parts, settings.events_group, settings.app_id)

    async def send_alert(key: bytes, value: bytes) -> None:
        fut = await alerts_topic.send(key=key, value=value)
        await fut

    engine: AlertEngine = build_engine(settings, send_alert, redis)

    def active(topic: str) -> set[int]:
        """Partitions of `topic` this worker actively owns (its tables' standby copies excluded)."""
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

    def known(version_key: str) -> bool:
        """Whether ``model@version`` has training lineage now: the model-lineage table (every worker
        holds all of it), so windows evaluated again after late training lineage see it."""
        table: Any = app.tables.get("model_lineage")
        return table is not None and table.data.get(version_key) is not None

    async def publish_metrics(points: list[Point]) -> None:
        for name, labels, ts, value in points:
            await metrics_topic.send(value=metric_record(name, labels, ts, value))

    async def observe(entry: FeedEntry, partition: int, now: float) -> None:
        for metric, label, n in entry.counts:
            counts[count_key(metric, label, partition)] += n
        updates: dict[Any, int] = {}
        ends: list[RunEnd] = []
        for run in entry.runs:
            end = runs.observe(run, partition)
            if isinstance(end, StreamUpdate):  # the latest update of a streaming run, whichever partition
                updates[end.run_id] = max(updates.get(end.run_id, 0), end.event_time)
            elif end is not None:
                ends.append(end)
        if updates:
            await redis.zadd(space.alert_streaming_seen, updates, gt=True)
        if ends:  # the batch's terminal events in one round trip
            pipe = redis.pipeline(transaction=False)
            for end in ends:
                pipe.set(space.alert_run_end(end.run_id), end.event_type, ex=runs.end_ttl_s)
            pipe.zrem(space.alert_streaming_seen, *{end.run_id for end in ends})
            await pipe.execute()
            for end in ends:
                runs.ended(end)
        due: dict[Any, int] = {e: int(now * 1e6) for e in entry.emitters if heartbeats.due(e, now)}
        if due:
            await redis.hset(space.alert_heartbeat, mapping=due)
        stats.observe(entry.kinds, entry.tiers, entry.latency)
        # Housekeeping in this partition's event context (table deletes need it).
        windows.purge(partition, now)
        runs.purge(partition, now)

    @app.agent(feed, concurrency=1, name="count_windows")
    async def count_windows(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            part = event.message.partition
            try:
                entry = read_entry(event.value)
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                stats.decode_error()
                log.error("window feed record at %s[%s]@%s undecodable: %s", event.message.topic, part,
                          event.message.offset, exc)
                continue
            await observe(entry, part, time.time())

    async def overdue_runs(now: float) -> list[Alert]:
        overdue = runs.overdue(now, active(feed.get_topic_name()))
        if not overdue:
            return []
        run_ids = [k.rsplit("|", 1)[0] for k, _ in overdue]
        ended = await redis.mget([space.alert_run_end(r) for r in run_ids])
        seen = await redis.zmscore(space.alert_streaming_seen, run_ids)
        firing, resolved = runs.settle(overdue, ended, now, seen)
        for alert in resolved:
            await engine.resolve(alert.fingerprint)
        return firing

    async def silent_emitters(now: float) -> list[Alert]:
        expected = list(cfg.expected_emitters)
        if not expected:
            return []
        seen = await redis.hmget(space.alert_heartbeat, expected)
        for emitter in expected:
            await redis.hsetnx(space.alert_heartbeat_baseline, emitter, int(now * 1e6))
        base = await redis.hmget(space.alert_heartbeat_baseline, expected)
        return heartbeat_alerts(expected, [None if v is None else int(v) for v in seen],
                                [None if v is None else int(v) for v in base], now, cfg.heartbeat_window_s)

    async def read_progress(mine: set[int]) -> Progress | None:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, progress.read, mine)
        except KafkaException as exc:
            log.warning("stream progress unreadable (%s); closed windows wait (at most %.0fs)",
                        exc.args[0] if exc.args else exc, gate.max_wait_s)
            return None

    async def released(closed: Windows, now: float, mine: set[int]) -> Windows:
        """The closed windows the watermark gate lets through (see :mod:`stream_apps.alerts.watermarks`)."""
        if mine != owned:
            owned.clear()
            owned.update(mine)
            gate.restart()
        waiting = gate.waiting(end for _, end in closed)
        if waiting:
            for r in gate.advance(waiting, now, await read_progress(mine)):
                if r.timed_out:
                    log.warning("window ending %s evaluated after the %.0fs watermark wait with partitions "
                                "still behind: %s", rfc3339(int(r.end * 1e6)), gate.max_wait_s,
                                ", ".join(f"{t}[{p}]" for t, p in r.behind) or "none read")
        gate.forget(now - cfg.horizon_s)
        return {w: c for w, c in closed.items() if w[1] in gate.released}

    @app.timer(interval=cfg.eval_interval_s, name="evaluate_windows")
    async def evaluate_windows_timer() -> None:
        now = time.time()
        # While partitions move or tables recover, a worker's counts may be partial: wait.
        settled = not (app.rebalancing or app.in_recovery)
        mine = active(feed.get_topic_name())
        closed = await released(windows.collect(now, mine), now, mine) if settled else {}
        firing = (evaluate_windows(closed, cfg, known) + await overdue_runs(now)) if settled else []
        silent = await silent_emitters(now)
        for alert in firing + silent:
            await engine.fire(alert)
        if settled:
            await engine.resolve_stale(WINDOW_ALERTS + (RUN_ALERT, STREAM_ALERT), cfg.stale_after_s)
            fresh = stat_log.fresh(closed, time.time(), known)
            if fresh:
                await publish_metrics(fresh)
        # Every worker sees every heartbeat: a full evaluation (also drops emitters no longer expected).
        await engine.resolve_absent((SILENT_ALERT,), {a.fingerprint for a in silent})
        await engine.tick()

    @app.timer(interval=cfg.sample_interval_s, name="publish_stream_metrics")
    async def publish_stream_metrics() -> None:
        await publish_metrics(stats.sample(time.time()))
