"""Producer metrics: plain counters updated by the emitter, read at scrape time.

Nothing here runs on the ``emit()`` path: the emitter bumps integers on its background
thread and a Prometheus collector (registered into a registry the caller passes in) reads
them when scraped. :meth:`ProducerStats.snapshot` gives the same figures as a dict for the
metrics topic and alert windows.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from producers.emitter import Emitter

#: Delivery latency histogram bucket upper bounds, seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)
_BOUNDS_NS = tuple(int(b * 1e9) for b in LATENCY_BUCKETS)


class ProducerStats:
    """Counters of one emitter. Written by its background thread only."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0  # rejected for good (schema violation, permanent broker error)
        self.failed_by_reason: dict[str, int] = {}
        self.delivery_errors = 0  # transient delivery errors (retried from the spool)
        self.replays = 0  # times the spool was rewound after delivery errors
        self.broker_up = True
        self.latency_counts = [0] * (len(_BOUNDS_NS) + 1)
        self.latency_sum_ns = 0

    def observe_latency(self, ns: int) -> None:
        self.latency_counts[bisect.bisect_left(_BOUNDS_NS, ns)] += 1
        self.latency_sum_ns += ns

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1

    def latency_quantile(self, q: float) -> float | None:
        """Upper bucket bound (seconds) below which a share ``q`` of delivered events fell."""
        counts = list(self.latency_counts)
        total = sum(counts)
        if total == 0:
            return None
        acc = 0
        for i, c in enumerate(counts):
            acc += c
            if acc >= q * total:
                return LATENCY_BUCKETS[i] if i < len(LATENCY_BUCKETS) else float("inf")
        return float("inf")


def snapshot(emitter: Emitter) -> dict[str, Any]:
    """All producer figures as a flat dict."""
    st, sp = emitter.stats, emitter.spool
    delivered = st.delivered
    return {
        "producer": emitter.name,
        "emitted": emitter.emitted,
        "delivered": delivered,
        "failed": st.failed,
        "failed_by_reason": dict(st.failed_by_reason),
        "delivery_errors": st.delivery_errors,
        "replays": st.replays,
        "queue_depth": emitter.queue_depth,
        "spool_depth": sp.depth,
        "spool_bytes": sp.bytes_used,
        "spool_segments": sp.segments,
        "spool_full": sp.full,
        "spool_full_rejections": sp.full_events,
        "spool_recovered": sp.recovered,
        "broker_up": st.broker_up,
        "delivery_latency_avg_s": (st.latency_sum_ns / 1e9 / delivered) if delivered else None,
        "delivery_latency_p99_s": st.latency_quantile(0.99),
    }


class EmitterCollector(Collector):
    """Prometheus collector for one or more emitters (label ``producer``)."""

    def __init__(self, *emitters: Emitter) -> None:
        self.emitters = list(emitters)

    def collect(self) -> Iterator[Any]:
        p = "lineage_producer_"
        fams: dict[str, Any] = {
            "emitted": CounterMetricFamily(p + "events_emitted", "Events accepted by emit()", labels=["producer"]),
            "delivered": CounterMetricFamily(p + "events_delivered", "Events acknowledged by Kafka", labels=["producer"]),
            "failed": CounterMetricFamily(p + "events_failed", "Events rejected for good (kept in rejected.ndjson)", labels=["producer", "reason"]),
            "delivery_errors": CounterMetricFamily(p + "delivery_errors", "Transient delivery errors (events retried from the spool)", labels=["producer"]),
            "queue": GaugeMetricFamily(p + "queue_depth", "Events in the client's in-memory queue", labels=["producer"]),
            "spool_depth": GaugeMetricFamily(p + "spool_depth", "Events in the spool not yet delivered", labels=["producer"]),
            "spool_bytes": GaugeMetricFamily(p + "spool_bytes", "Bytes held by the spool on disk", labels=["producer"]),
            "spool_full": GaugeMetricFamily(p + "spool_full", "1 while the spool is at its size cap (emit raises SpoolFullError)", labels=["producer"]),
            "spool_rejected": CounterMetricFamily(p + "spool_full_rejections", "emit() calls refused because the spool was full", labels=["producer"]),
            "broker_up": GaugeMetricFamily(p + "broker_up", "0 while the client reports all brokers down", labels=["producer"]),
        }
        hist = HistogramMetricFamily(p + "delivery_latency_seconds", "emit() to broker acknowledgement", labels=["producer"])
        for em in self.emitters:
            snap = snapshot(em)
            name = [em.name]
            fams["emitted"].add_metric(name, snap["emitted"])
            fams["delivered"].add_metric(name, snap["delivered"])
            for reason, n in snap["failed_by_reason"].items():
                fams["failed"].add_metric([em.name, reason], n)
            fams["delivery_errors"].add_metric(name, snap["delivery_errors"])
            fams["queue"].add_metric(name, snap["queue_depth"])
            fams["spool_depth"].add_metric(name, snap["spool_depth"])
            fams["spool_bytes"].add_metric(name, snap["spool_bytes"])
            fams["spool_full"].add_metric(name, 1.0 if snap["spool_full"] else 0.0)
            fams["spool_rejected"].add_metric(name, snap["spool_full_rejections"])
            fams["broker_up"].add_metric(name, 1.0 if snap["broker_up"] else 0.0)
            counts = list(em.stats.latency_counts)
            acc, buckets = 0, []
            for bound, c in zip((*(str(b) for b in LATENCY_BUCKETS), "+Inf"), counts):
                acc += c
                buckets.append((bound, acc))
            hist.add_metric(name, buckets, em.stats.latency_sum_ns / 1e9)
        yield from fams.values()
        yield hist


def register_metrics(registry: CollectorRegistry, *emitters: Emitter) -> EmitterCollector:
    """Register a collector for ``emitters`` into ``registry``; returns it (add more via ``.emitters``)."""
    collector = EmitterCollector(*emitters)
    registry.register(collector)
    return collector
