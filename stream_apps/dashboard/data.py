"""What the dashboard page polls (`/api/dashboard/data`) and what `/metrics` exposes, from one Monitor."""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lineage.keyspace import KeySpace
from stream_apps.alerts.model import Alert
from stream_apps.monitor.service import Monitor


def _alert_json(a: Alert) -> dict[str, Any]:
    return {
        "name": a.name,
        "state": a.state,
        "severity": a.severity,
        "labels": a.labels,
        "summary": a.summary,
        "starts_at": a.starts_at / 1e6,
        "ends_at": a.ends_at / 1e6 if a.ends_at else None,
        "fingerprint": a.fingerprint,
        "notified": a.notified,
    }


async def alerts_json(mon: Monitor, recent: int = 50) -> dict[str, Any]:
    active = await mon.engine.book.active()
    history = await mon.engine.book.history(recent)
    return {"active": [_alert_json(a) for a in active], "recent": [_alert_json(a) for a in history]}


def _series(mon: Monitor, name: str, since: float) -> list[dict[str, Any]]:
    return [
        {"labels": dict(k), "points": [[round(t, 3), v] for t, v in pts]}
        for k, pts in sorted(mon.series.points(name, since).items())
    ]


def _completeness(mon: Monitor) -> list[dict[str, Any]]:
    totals = mon.series.latest("inference_window_events")
    shares = mon.series.latest("inference_window_lineage_share")
    uncaptured = mon.series.latest("consequential_window_uncaptured")
    models: dict[str, dict[str, Any]] = {}
    for name, source in (("events", totals), ("share", shares), ("uncaptured", uncaptured)):
        for k, (ts, v) in source.items():
            model = dict(k).get("model", "")
            row = models.setdefault(model, {"model": model, "events": 0, "share": None, "uncaptured": 0, "ts": ts})
            row[name] = v
            row["ts"] = max(row["ts"], ts)
    return sorted(models.values(), key=lambda r: r["model"])


async def dashboard_data(mon: Monitor, window_s: float = 900.0) -> dict[str, Any]:
    now = time.time()
    since = now - window_s
    return {
        "now": now,
        "sample_interval_s": mon.cfg.sample_interval_s,
        "thresholds": {"lag": mon.cfg.lag_threshold, "lineage_share_min": mon.cfg.lineage_share_min,
                       "dlq_rate": mon.cfg.dlq_rate_threshold},
        "monitor": {"ticks": mon.ticks, "errors": mon.errors, "leader": mon.leader,
                    "last_sample": mon.last_sample.ts if mon.last_sample else None},
        "lag": _series(mon, "consumer_lag", since),
        "throughput": _series(mon, "topic_messages_per_second", since),
        "dlq_rate": _series(mon, "deadletter_per_second", since),
        "dlq_total": _series(mon, "deadletter_total", since),
        "latency": _series(mon, "e2e_latency_seconds", since),
        "spool": _series(mon, "producer_spool_depth", since),
        "tiers": [{"labels": dict(k), "total": v} for k, v in sorted(mon.counters.get("sampling_tier_events", {}).items())],
        "completeness": _completeness(mon),
        "pii": await _pii_intake(mon),
        "alerts": await alerts_json(mon),
    }


async def _pii_intake(mon: Monitor) -> dict[str, int]:
    """Inference events whose PII arrived unsealed (accepted under the migration setting, or refused)."""
    stats = mon.settings.app_id
    raw = await mon.redis.hmget(KeySpace.of(mon.settings).stats(stats), ["unsealed.inference", "dlq.unsealed_pii",
                                                                        "accepted.inference"])
    unsealed, refused, accepted = (int(v or 0) for v in raw)
    return {"unsealed": unsealed, "unsealed_refused": refused, "unsealed_accepted": unsealed - refused,
            "inference_accepted": accepted, "accept_unsealed": int(mon.settings.pii.accept_unsealed)}


class _Snapshot(Collector):
    def __init__(self, mon: Monitor, active: list[Alert], counters: dict[str, int]) -> None:
        self.mon, self.active, self.alert_counters = mon, active, counters

    def collect(self) -> Any:
        mon = self.mon
        lag = GaugeMetricFamily("lineage_consumer_lag", "Messages behind the high watermark", labels=["group", "topic", "partition"])
        for k, (_, v) in sorted(mon.series.latest("consumer_lag").items()):
            d = dict(k)
            lag.add_metric([d["group"], d["topic"], d["partition"]], v)
        yield lag
        tput = GaugeMetricFamily("lineage_topic_messages_per_second", "Produce rate per topic", labels=["topic"])
        for k, (_, v) in sorted(mon.series.latest("topic_messages_per_second").items()):
            tput.add_metric([dict(k)["topic"]], v)
        yield tput
        dlq_total = mon.series.latest("deadletter_total")
        dlq = CounterMetricFamily("lineage_deadletter", "Dead-lettered records (topic high watermark)")
        dlq.add_metric([], next(iter(dlq_total.values()))[1] if dlq_total else 0.0)
        yield dlq
        rate = mon.series.latest("deadletter_per_second")
        dlq_rate = GaugeMetricFamily("lineage_deadletter_per_second", "Dead-letter rate")
        dlq_rate.add_metric([], next(iter(rate.values()))[1] if rate else 0.0)
        yield dlq_rate
        lat = GaugeMetricFamily("lineage_e2e_latency_seconds", "Emit-to-graph latency by quantile (worst worker)", labels=["quantile"])
        worst: dict[str, float] = {}
        for k, (_, v) in mon.series.latest("e2e_latency_seconds").items():
            q = dict(k).get("quantile", "")
            worst[q] = max(worst.get(q, 0.0), v)
        for q, v in sorted(worst.items()):
            lat.add_metric([q], v)
        yield lat
        tiers = CounterMetricFamily("lineage_sampling_tier_events", "Inference events per sampling tier", labels=["tier"])
        for k, v in sorted(mon.counters.get("sampling_tier_events", {}).items()):
            tiers.add_metric([dict(k).get("tier", "")], v)
        yield tiers
        spool = GaugeMetricFamily("lineage_producer_spool_depth", "Events in a producer's disk spool", labels=["producer"])
        for k, (_, v) in sorted(mon.series.latest("producer_spool_depth").items()):
            d = dict(k)
            spool.add_metric([d.get("producer") or d.get("service") or ",".join(f"{a}={b}" for a, b in k)], v)
        yield spool
        share = GaugeMetricFamily("lineage_model_lineage_share", "Share of inference events with required lineage, last closed window", labels=["model"])
        for row in _completeness(mon):
            if row["share"] is not None:
                share.add_metric([row["model"]], row["share"])
        yield share
        active = GaugeMetricFamily("lineage_alerts_active", "Active alerts", labels=["alertname", "severity"])
        counts: dict[tuple[str, str], int] = {}
        for a in self.active:
            counts[(a.name, a.severity)] = counts.get((a.name, a.severity), 0) + 1
        for (n, s), c in sorted(counts.items()):
            active.add_metric([n, s], c)
        yield active
        hooks = CounterMetricFamily("lineage_alert_notifications", "Alert deliveries by outcome", labels=["outcome"])
        for outcome in ("published_firing", "published_resolved", "webhook_sent", "webhook_failed"):
            hooks.add_metric([outcome], self.alert_counters.get(outcome, 0))
        yield hooks
        pend = GaugeMetricFamily("lineage_alert_webhook_pending", "Webhook notifications parked for retry")
        pend.add_metric([], self.alert_counters.get("webhook_pending", 0))
        yield pend
        err = CounterMetricFamily("lineage_monitor_errors", "Failed monitor ticks")
        err.add_metric([], mon.errors)
        yield err


async def metrics_text(mon: Monitor) -> bytes:
    """Prometheus text exposition of the live values."""
    active = await mon.engine.book.active()
    counters = await mon.engine.publisher.counters()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(mon, active, counters))
    return generate_latest(registry)
