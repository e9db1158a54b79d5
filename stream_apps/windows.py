"""Completeness detection from stream windows (Faust), evaluated by a timer, not `on_window_close`.

The detection agent reads graph rows (one per accepted event) and keeps:

* a tumbling (or hopping) windowed table of counters, keyed ``"<metric>|<label>|<partition>"``:
  per model, inference events and those lacking required lineage (model version + training
  run); consequential predictions and those not fully captured; inference events whose model
  version has no training lineage. The partition in the key keeps every key on the changelog
  partition it is written from, so a restarted worker recovers exact counts.
* a table of runs that STARTed (keyed ``"<run_id>|<partition>"``). Terminal events go to Redis,
  because a run's START and COMPLETE usually sit on different partitions (graph rows are keyed
  by event id) and may be processed by different workers.
* emitter last-seen times in Redis (heartbeat), so "silent" means silent for all workers.

An ``@app.timer`` scans the tables' stores: every window that closed within `eval_horizon` is
evaluated (including windows recovered from the changelog after a restart, which Faust never
expires by itself), and runs past their deadline are checked. Alerts are fired through the
Redis-backed engine (exactly one notification across workers); window alerts no one re-asserts
for `stale_after_s` resolve. Stale windows are deleted in-stream (deletes must happen in the
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
from stream_apps.alerts.config import AlertSettings, alert_settings
from stream_apps.alerts.engine import AlertEngine, build_engine
from stream_apps.alerts.model import Alert, rfc3339

log = logging.getLogger(__name__)

SHARE_ALERT = "InferenceLineageIncomplete"
CONSEQ_ALERT = "ConsequentialNotCaptured"
UNKNOWN_ALERT = "UnknownModelVersion"
RUN_ALERT = "RunIncomplete"
SILENT_ALERT = "EmitterSilent"
WINDOW_ALERTS = (SHARE_ALERT, CONSEQ_ALERT, UNKNOWN_ALERT)
TERMINAL = ("COMPLETE", "FAIL", "ABORT")
CONSEQUENTIAL_TIERS = ("consequential", "flagged")
QUANTILES = (0.5, 0.95, 0.99)


def window_counts(rec: GraphRecord) -> list[tuple[str, str]]:
    """(metric, label) counters one graph row adds to its window."""
    inf = rec.inference
    if rec.kind != "inference" or not inf:
        return []
    model = str(inf.get("model_name") or "")
    out = [("inf", model)]
    if not (inf.get("model_version") and inf.get("training_run_id")):
        out.append(("inf_missing", model))
    if inf.get("tier") in CONSEQUENTIAL_TIERS:
        out.append(("conseq", model))
        if not inf.get("lineage_complete"):
            out.append(("conseq_missing", model))
    if inf.get("unknown_model_version"):
        out.append(("unknown", f"{model}@{inf.get('model_version') or ''}"))
    return out


def split_key(key: str) -> tuple[str, str, int]:
    metric, rest = key.split("|", 1)
    label, part = rest.rsplit("|", 1)
    return metric, label, int(part)


def evaluate_windows(
    windows: dict[tuple[float, float], dict[tuple[str, str], int]], cfg: AlertSettings
) -> list[Alert]:
    """Alerts that hold for closed windows: {(start, end): {(metric, label): count}} (pure)."""
    alerts: list[Alert] = []
    for (start, end), counts in sorted(windows.items()):
        span = f"{rfc3339(int(start * 1e6))[11:19]}-{rfc3339(int(end * 1e6))[11:19]}Z"
        models = {label for (metric, label) in counts if metric == "inf"}
        for model in sorted(models):
            total = counts.get(("inf", model), 0)
            missing = counts.get(("inf_missing", model), 0)
            if total >= cfg.min_window_events and total and (total - missing) / total < cfg.lineage_share_min:
                share = missing / total
                alerts.append(Alert.firing(
                    SHARE_ALERT, {"model": model},
                    f"model {model}: {share:.1%} of {total} inference events in window {span} lack required "
                    f"lineage (model version + training run); allowed {1 - cfg.lineage_share_min:.0%}",
                    "warning", share, source="windows"))
            conseq, uncaptured = counts.get(("conseq", model), 0), counts.get(("conseq_missing", model), 0)
            if uncaptured:
                alerts.append(Alert.firing(
                    CONSEQ_ALERT, {"model": model},
                    f"model {model}: {uncaptured} of {conseq} consequential predictions in window {span} "
                    "lack full lineage (training run, feature sets, stored snapshot)",
                    "critical", uncaptured, source="windows"))
        for (metric, label), n in sorted(counts.items()):
            if metric == "unknown" and n:
                model, _, version = label.rpartition("@")
                alerts.append(Alert.firing(
                    UNKNOWN_ALERT, {"model": model, "model_version": version},
                    f"model {model} version {version} served {n} predictions in window {span} "
                    "but has no training lineage", "critical", n, source="windows"))
    # Several windows (hopping, or a backlog after a restart) may assert one alert: keep the last.
    return list({a.fingerprint: a for a in alerts}.values())


class WindowState:
    """Per-worker, in-memory bookkeeping around the tables (nothing here needs to survive)."""

    def __init__(self) -> None:
        self.heartbeat_sent: dict[str, float] = {}
        self.purge: dict[int, set[Any]] = defaultdict(set)
        self.last_purge: dict[int, float] = {}
        self.latencies: list[float] = []
        self.tiers: dict[str, int] = defaultdict(int)
        self.kinds: dict[str, int] = defaultdict(int)
        self.decode_errors = 0
        self.published_windows: set[tuple[float, str]] = set()


def register(app: faust.App, settings: Any) -> None:
    """Declare the completeness tables, the detection agent and the evaluation timers on `app`."""
    cfg = alert_settings(settings)
    parts = settings.topics.partitions
    size = timedelta(seconds=cfg.window_s)
    counts_table = app.Table(
        "alert-window-counts", default=int, partitions=parts,
        help="completeness counters per window, key metric|label|partition",
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
    alerts_topic = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")
    metrics_topic = app.topic(settings.topics.metrics, key_serializer="raw", value_serializer="raw")
    ns = f"lineage:{settings.topics.prefix}:alerts"
    redis = aioredis.from_url(settings.redis_url)
    state = WindowState()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    horizon = cfg.horizon_s

    async def send_alert(key: bytes, value: bytes) -> None:
        fut = await alerts_topic.send(key=key, value=value)
        await fut

    engine: AlertEngine = build_engine(settings, send_alert, redis)

    async def publish_metrics(points: list[tuple[str, dict[str, str], float, float]]) -> None:
        for name, labels, ts, value in points:
            body = orjson.dumps({"name": name, "labels": labels, "ts": rfc3339(int(ts * 1e6)), "value": value})
            await metrics_topic.send(value=body)

    async def observe(rec: GraphRecord, partition: int) -> None:
        now = time.time()
        for metric, label in window_counts(rec):
            counts[f"{metric}|{label}|{partition}"] += 1
        if rec.kind != "inference":
            run_id = str(rec.payload.get("run", {}).get("runId", ""))
            if rec.event_type == "START" and run_id:
                key = f"{run_id}|{partition}"
                if runs.get(key) is None:
                    job = rec.payload.get("job", {})
                    runs[key] = {"t": rec.event_time, "job": f"{job.get('namespace', '')}/{job.get('name', '')}",
                                 "kind": rec.kind}
            elif rec.event_type in TERMINAL and run_id:
                await redis.set(f"{ns}:run_end:{run_id}", rec.event_type,
                                ex=int(max(cfg.run_deadline_s * 2, 86_400)))
                if runs.get(f"{run_id}|{partition}") is not None:
                    del runs[f"{run_id}|{partition}"]
        emitter = str(rec.payload.get("producer") or "")
        if emitter and now - state.heartbeat_sent.get(emitter, 0) >= 1.0:
            state.heartbeat_sent[emitter] = now
            await redis.hset(f"{ns}:heartbeat", emitter, int(now * 1e6))
        state.latencies.append(max(0.0, now - rec.event_time / 1e6))
        state.kinds[rec.kind] += 1
        if rec.inference and rec.inference.get("tier"):
            state.tiers[str(rec.inference["tier"])] += 1
        # Housekeeping in this partition's event context (table deletes need it).
        if now - state.last_purge.get(partition, 0) > cfg.eval_interval_s * 5:
            state.last_purge[partition] = now
            for key in list(state.purge.pop(partition, ())):
                if isinstance(key, str):
                    if runs.get(key) is not None:
                        del runs[key]
                elif key in counts_table.data:
                    del counts_table[key]

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
            await observe(rec, event.message.partition)

    def closed_windows(now: float) -> dict[tuple[float, float], dict[tuple[str, str], int]]:
        out: dict[tuple[float, float], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        for key, value in list(counts_table.data.items()):
            try:
                raw, (start, end) = key
                metric, label, part = split_key(raw)
            except (TypeError, ValueError):
                continue
            if end + cfg.window_grace_s > now:
                continue  # still open
            if end < now - horizon:
                if end < now - cfg.window_retention_s:
                    state.purge[part].add(key)
                continue
            out[(start, end)][(metric, label)] += int(value or 0)
        return out

    async def publish_window_stats(windows: dict[tuple[float, float], dict[tuple[str, str], int]]) -> None:
        points = []
        for (start, end), c in windows.items():
            for (metric, label), total in c.items():
                if metric != "inf" or (end, label) in state.published_windows:
                    continue
                state.published_windows.add((end, label))
                missing = c.get(("inf_missing", label), 0)
                labels = {"model": label, "worker": worker}
                points += [("inference_window_events", labels, end, float(total)),
                           ("inference_window_lineage_share", labels, end, (total - missing) / total if total else 1.0),
                           ("consequential_window_events", labels, end, float(c.get(("conseq", label), 0))),
                           ("consequential_window_uncaptured", labels, end, float(c.get(("conseq_missing", label), 0)))]
        if points:
            await publish_metrics(points)
        cutoff = time.time() - cfg.window_retention_s
        state.published_windows = {w for w in state.published_windows if w[0] >= cutoff}

    async def overdue_runs(now: float) -> list[Alert]:
        candidates = []
        for key, value in list(runs.data.items()):
            if not isinstance(value, dict) or not isinstance(key, str):
                continue
            if value["t"] / 1e6 + cfg.run_deadline_s <= now:
                candidates.append((key, value))
        if not candidates:
            return []
        ended = await redis.mget([f"{ns}:run_end:{k.rsplit('|', 1)[0]}" for k, _ in candidates])
        alerts = []
        for (key, value), end in zip(candidates, ended):
            run_id, part = key.rsplit("|", 1)
            alert = Alert.firing(
                RUN_ALERT, {"job": value["job"], "run_id": run_id},
                f"run {run_id} of job {value['job']} started {rfc3339(int(value['t']))} and has no terminal "
                f"event after {cfg.run_deadline_s:.0f}s", "warning", now - value["t"] / 1e6, source="windows")
            if end is not None:
                await engine.resolve(alert.fingerprint)
                state.purge[int(part)].add(key)
            else:
                alerts.append(alert)
        return alerts

    async def silent_emitters(now: float) -> tuple[list[Alert], set[str]]:
        if not cfg.expected_emitters:
            return [], set()
        seen = await redis.hmget(f"{ns}:heartbeat", list(cfg.expected_emitters))
        for emitter in cfg.expected_emitters:
            await redis.hsetnx(f"{ns}:heartbeat_baseline", emitter, int(now * 1e6))
        base = await redis.hmget(f"{ns}:heartbeat_baseline", list(cfg.expected_emitters))
        out, fps = [], set()
        for emitter, last, first in zip(cfg.expected_emitters, seen, base):
            ref = int(last) if last is not None else int(first or now * 1e6)
            quiet = now - ref / 1e6
            alert = Alert.firing(SILENT_ALERT, {"emitter": emitter},
                                 f"expected emitter {emitter} sent nothing for {quiet:.0f}s "
                                 f"(heartbeat window {cfg.heartbeat_window_s:.0f}s)", "warning", quiet, source="windows")
            if quiet > cfg.heartbeat_window_s:
                out.append(alert)
            fps.add(alert.fingerprint)
        return out, fps

    @app.timer(interval=cfg.eval_interval_s, name="evaluate_windows")
    async def evaluate_windows_timer() -> None:
        now = time.time()
        windows = closed_windows(now)
        firing = evaluate_windows(windows, cfg) + await overdue_runs(now)
        silent, emitter_fps = await silent_emitters(now)
        for alert in firing + silent:
            await engine.fire(alert)
        await engine.resolve_stale(WINDOW_ALERTS + (RUN_ALERT,), cfg.stale_after_s)
        for alert in await engine.book.active([SILENT_ALERT]):
            if alert.fingerprint in emitter_fps and alert.fingerprint not in {a.fingerprint for a in silent}:
                await engine.resolve(alert.fingerprint)
        await publish_window_stats(windows)
        await engine.tick()

    @app.timer(interval=cfg.sample_interval_s, name="publish_stream_metrics")
    async def publish_stream_metrics() -> None:
        now = time.time()
        lat, state.latencies = sorted(state.latencies), []
        points = []
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
