"""Completeness detection from stream windows (Faust), evaluated by a timer, not `on_window_close`.

Graph rows are keyed by event id, so one model's predictions are spread over every partition
and every worker. To make the per-model figures exact however partitions are spread, the
counts are re-keyed by model (what Faust's ``group_by`` does):

* ``detect_completeness`` reads the graph topic. For each inference row it sends the row's
  counters (see :func:`~stream_apps.alerts.completeness.window_counts`) to an internal topic
  (:func:`lineage.topics.window_counts_topic`, created with the pipeline's topics) keyed by
  model, stamped with the graph row's timestamp. Faust flushes its producer before
  it commits the graph offsets, so a committed row's counters were delivered (at least once).
  It also keeps a table of runs that STARTed (keyed ``"<run_id>|<partition>"``), records
  terminal events in Redis (a run's START and COMPLETE usually sit on different partitions)
  and emitter last-seen times in Redis (heartbeat), so "silent" means silent for all workers.
* ``count_windows`` reads the model-keyed topic: every count of one model lands on one
  partition, in a tumbling (or hopping) windowed table keyed ``"<metric>|<label>|<partition>"``.
  The partition in the key keeps every key on the changelog partition it is written from, so
  a restarted worker recovers exact counts.

An ``@app.timer`` scans the tables' stores, restricted to the partitions this worker actively
owns (standby replicas are skipped) and not while a rebalance or table recovery is under way
(counts may be partial then): every window that closed within `eval_horizon` is
evaluated (including windows recovered from the changelog after a restart, which Faust never
expires by itself), and runs past their deadline are checked. Alerts are fired through the
Redis-backed engine (exactly one notification across workers); window alerts no one re-asserts
for `stale_after_s` resolve. Stale entries are deleted in-stream (deletes must happen in the
partition's own event context); the evaluation horizon keeps any leftover from re-alerting.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis

from lineage.graph import GraphRecord
from lineage.keyspace import KeySpace
from lineage.metric_records import metric_record, rfc3339
from lineage.topics import window_counts_retention_ms, window_counts_topic
from stream_apps.alerts.completeness import (
    CONSEQ_ALERT,
    RUN_ALERT,
    SHARE_ALERT,
    SILENT_ALERT,
    TERMINAL,
    UNKNOWN_ALERT,
    WINDOW_ALERTS,
    Point,
    Windows,
    count_key,
    evaluate_windows,
    heartbeat_alerts,
    split_key,
    window_counts,
    window_stat_points,
)
from stream_apps.alerts.config import alert_settings
from stream_apps.alerts.engine import AlertEngine, build_engine
from stream_apps.alerts.model import Alert

__all__ = ["CONSEQ_ALERT", "SHARE_ALERT", "UNKNOWN_ALERT", "evaluate_windows", "register", "split_key", "window_counts"]

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.95, 0.99)


class WindowState:
    """Per-worker, in-memory bookkeeping around the tables (nothing here needs to survive)."""

    def __init__(self) -> None:
        self.heartbeat_sent: dict[str, float] = {}
        self.purge_runs: dict[int, set[str]] = defaultdict(set)
        self.purge_counts: dict[int, set[Any]] = defaultdict(set)
        self.last_purge: dict[tuple[str, int], float] = {}
        self.latencies: list[float] = []
        self.tiers: dict[str, int] = defaultdict(int)
        self.kinds: dict[str, int] = defaultdict(int)
        self.decode_errors = 0
        self.published: dict[tuple[str, str, float], float] = {}

    def purge_due(self, what: str, partition: int, now: float, every_s: float) -> bool:
        if now - self.last_purge.get((what, partition), 0) <= every_s:
            return False
        self.last_purge[(what, partition)] = now
        return True


def register(app: faust.App, settings: Any) -> None:
    """Declare the completeness tables, the detection agents and the evaluation timers on `app`."""
    cfg = alert_settings(settings)
    parts = settings.topics.partitions
    size = timedelta(seconds=cfg.window_s)
    counts_table = app.Table(
        "alert-window-counts", default=int, partitions=parts,
        help="completeness counters per window, key metric|label|partition (partition of the by-model topic)",
    )
    if cfg.window_step_s:
        counts = counts_table.hopping(size, timedelta(seconds=cfg.window_step_s),
                                      expires=timedelta(seconds=cfg.window_retention_s))
    else:
        counts = counts_table.tumbling(size, expires=timedelta(seconds=cfg.window_retention_s))
    counts = counts.relative_to_stream()
    runs = app.Table("alert-open-runs", default=None, partitions=parts, help="run_id|partition -> START")
    graph = app.topic(settings.topics.graph, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", allow_empty=True)
    by_model = app.topic(window_counts_topic(settings), internal=True, partitions=parts, key_type=bytes,
                         value_type=bytes, key_serializer="raw", value_serializer="raw", allow_empty=True,
                         retention=timedelta(milliseconds=window_counts_retention_ms(settings)))
    alerts_topic = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")
    metrics_topic = app.topic(settings.topics.metrics, key_serializer="raw", value_serializer="raw")
    space = KeySpace.of(settings)
    redis = aioredis.from_url(settings.redis_url)
    state = WindowState()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    horizon = cfg.horizon_s
    purge_every = cfg.eval_interval_s * 5

    async def send_alert(key: bytes, value: bytes) -> None:
        fut = await alerts_topic.send(key=key, value=value)
        await fut

    engine: AlertEngine = build_engine(settings, send_alert, redis)

    def active(topic: str) -> set[int]:
        """Partitions of `topic` this worker actively owns (its tables' standby copies excluded)."""
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

    async def publish_metrics(points: list[Point]) -> None:
        for name, labels, ts, value in points:
            await metrics_topic.send(value=metric_record(name, labels, ts, value))

    async def observe(rec: GraphRecord, partition: int, timestamp: float) -> None:
        now = time.time()
        pairs = window_counts(rec)
        if pairs and rec.inference is not None:
            model = str(rec.inference.get("model_name") or "")
            await by_model.send(key=model.encode(), value=orjson.dumps(pairs), timestamp=timestamp)
        if rec.kind != "inference":
            run_id = str(rec.payload.get("run", {}).get("runId", ""))
            if rec.event_type == "START" and run_id:
                key = f"{run_id}|{partition}"
                if runs.get(key) is None:
                    job = rec.payload.get("job", {})
                    runs[key] = {"t": rec.event_time, "job": f"{job.get('namespace', '')}/{job.get('name', '')}",
                                 "kind": rec.kind}
            elif rec.event_type in TERMINAL and run_id:
                await redis.set(space.alert_run_end(run_id), rec.event_type,
                                ex=int(max(cfg.run_deadline_s * 2, 86_400)))
                if runs.get(f"{run_id}|{partition}") is not None:
                    del runs[f"{run_id}|{partition}"]
        emitter = str(rec.payload.get("producer") or "")
        if emitter and now - state.heartbeat_sent.get(emitter, 0) >= 1.0:
            state.heartbeat_sent[emitter] = now
            await redis.hset(space.alert_heartbeat, emitter, int(now * 1e6))
        state.latencies.append(max(0.0, now - rec.event_time / 1e6))
        state.kinds[rec.kind] += 1
        if rec.inference and rec.inference.get("tier"):
            state.tiers[str(rec.inference["tier"])] += 1
        # Housekeeping in this partition's event context (table deletes need it).
        if state.purge_due("runs", partition, now, purge_every):
            for key in list(state.purge_runs.pop(partition, ())):
                if runs.get(key) is not None:
                    del runs[key]

    @app.agent(graph, concurrency=1, name="detect_completeness")
    async def detect_completeness(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                rec = GraphRecord.from_bytes(event.value)
            except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
                state.decode_errors += 1
                log.error("graph row at %s[%s]@%s undecodable: %s", event.message.topic,
                          event.message.partition, event.message.offset, exc)
                continue
            await observe(rec, event.message.partition, event.message.timestamp)

    @app.agent(by_model, concurrency=1, name="count_windows")
    async def count_windows(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            part = event.message.partition
            try:
                pairs = [(str(m), str(label)) for m, label in orjson.loads(event.value)]
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                state.decode_errors += 1
                log.error("window counters at %s[%s]@%s undecodable: %s", event.message.topic, part,
                          event.message.offset, exc)
                continue
            for metric, label in pairs:
                counts[count_key(metric, label, part)] += 1
            if state.purge_due("counts", part, time.time(), purge_every):
                for key in list(state.purge_counts.pop(part, ())):
                    if key in counts_table.data:
                        del counts_table[key]

    def closed_windows(now: float) -> dict[tuple[float, float], dict[tuple[str, str], int]]:
        out: dict[tuple[float, float], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        mine = active(by_model.get_topic_name())
        for key, value in list(counts_table.data.items()):
            try:
                raw, (start, end) = key
                metric, label, part = split_key(raw)
            except (TypeError, ValueError):
                continue
            if part not in mine or end + cfg.window_grace_s > now:
                continue  # a standby copy, or still open
            if end < now - horizon:
                if end < now - cfg.window_retention_s:
                    state.purge_counts[part].add(key)
                continue
            out[(start, end)][(metric, label)] += int(value or 0)
        return out

    async def publish_window_stats(windows: Windows) -> None:
        """Window figures once a window closed, again whenever a late count changed them."""
        fresh = []
        for point in window_stat_points(windows):
            name, labels, end, value = point
            key = (name, labels["model"], end)
            if state.published.get(key) != value:
                state.published[key] = value
                fresh.append(point)
        if fresh:
            await publish_metrics(fresh)
        cutoff = time.time() - cfg.window_retention_s
        state.published = {k: v for k, v in state.published.items() if k[2] >= cutoff}

    async def overdue_runs(now: float) -> list[Alert]:
        candidates = []
        mine = active(settings.topics.graph)
        for key, value in list(runs.data.items()):
            if not isinstance(value, dict) or not isinstance(key, str) or int(key.rsplit("|", 1)[1]) not in mine:
                continue
            if value["t"] / 1e6 + cfg.run_deadline_s <= now:
                candidates.append((key, value))
        if not candidates:
            return []
        ended = await redis.mget([space.alert_run_end(k.rsplit("|", 1)[0]) for k, _ in candidates])
        alerts = []
        for (key, value), end in zip(candidates, ended):
            run_id, part = key.rsplit("|", 1)
            alert = Alert.firing(
                RUN_ALERT, {"job": value["job"], "run_id": run_id},
                f"run {run_id} of job {value['job']} started {rfc3339(int(value['t']))} and has no terminal "
                f"event after {cfg.run_deadline_s:.0f}s", "warning", now - value["t"] / 1e6, source="windows")
            if end is not None:
                await engine.resolve(alert.fingerprint)
                state.purge_runs[int(part)].add(key)
            else:
                alerts.append(alert)
        return alerts

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

    @app.timer(interval=cfg.eval_interval_s, name="evaluate_windows")
    async def evaluate_windows_timer() -> None:
        now = time.time()
        # While partitions move or tables recover, a worker's counts may be partial: wait.
        settled = not (app.rebalancing or app.in_recovery)
        windows = closed_windows(now) if settled else {}
        firing = (evaluate_windows(windows, cfg) + await overdue_runs(now)) if settled else []
        silent = await silent_emitters(now)
        for alert in firing + silent:
            await engine.fire(alert)
        if settled:
            await engine.resolve_stale(WINDOW_ALERTS + (RUN_ALERT,), cfg.stale_after_s)
            await publish_window_stats(windows)
        # Every worker sees every heartbeat: a full evaluation (also drops emitters no longer expected).
        await engine.resolve_absent((SILENT_ALERT,), {a.fingerprint for a in silent})
        await engine.tick()

    @app.timer(interval=cfg.sample_interval_s, name="publish_stream_metrics")
    async def publish_stream_metrics() -> None:
        now = time.time()
        lat, state.latencies = sorted(state.latencies), []
        points: list[Point] = []
        if lat:
            for q in QUANTILES:
                points.append(("e2e_latency_seconds", {"quantile": str(q), "worker": worker}, now,
                               lat[min(len(lat) - 1, int(q * len(lat)))]))
        for tier, n in state.tiers.items():
            points.append(("sampling_tier_events", {"tier": tier, "worker": worker}, now, float(n)))
        for kind, n in state.kinds.items():
            points.append(("graph_events", {"kind": kind, "worker": worker}, now, float(n)))
        state.tiers.clear()
        state.kinds.clear()
        if state.decode_errors:
            points.append(("graph_decode_errors", {"worker": worker}, now, float(state.decode_errors)))
            state.decode_errors = 0
        await publish_metrics(points)
