"""Producer metrics: plain counters updated by the emitter, read at scrape time.

Nothing here runs on the ``emit()`` path: the emitter bumps integers on its background
thread and a Prometheus collector (registered into a registry the caller passes in) reads
them when scraped. :func:`snapshot` gives the same figures as a dict, and
:class:`MetricsReporter` publishes them to the metrics topic, where the sink stores them in
``pipeline_metrics`` and the monitor's spool-depth alert reads them.
"""
from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from lineage.kafka import client_config
from lineage.metric_records import metric_record
from producers.spool import Spool

log = logging.getLogger(__name__)

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


class Measured(Protocol):
    """What the figures are read from: an :class:`~producers.emitter.Emitter`."""

    name: str
    stats: ProducerStats
    spool: Spool

    @property
    def emitted(self) -> int: ...

    @property
    def queue_depth(self) -> int: ...


def snapshot(emitter: Measured) -> dict[str, Any]:
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

    def __init__(self, *emitters: Measured) -> None:
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


def register_metrics(registry: CollectorRegistry, *emitters: Measured) -> EmitterCollector:
    """Register a collector for ``emitters`` into ``registry``; returns it (add more via ``.emitters``)."""
    collector = EmitterCollector(*emitters)
    registry.register(collector)
    return collector


#: What the emitter reports to the metrics topic: (metric name, :func:`snapshot` key).
REPORTED: tuple[tuple[str, str], ...] = (
    ("producer_queue_depth", "queue_depth"),
    ("producer_spool_depth", "spool_depth"),
    ("producer_spool_bytes", "spool_bytes"),
    ("producer_events_delivered", "delivered"),
    ("producer_events_failed", "failed"),
    ("producer_delivery_errors", "delivery_errors"),
    ("producer_delivery_latency_p99_seconds", "delivery_latency_p99_s"),
)


def report_points(snap: dict[str, Any]) -> list[tuple[str, float]]:
    """The reported figures of one snapshot; a latency with no delivery yet is left out."""
    points = []
    for name, key in REPORTED:
        value = snap[key]
        if value is None or not math.isfinite(value):
            continue
        points.append((name, float(value)))
    return points


class MetricsReporter:
    """Publishes one emitter's figures to the metrics topic every ``interval`` seconds.

    It has its own small producer: a report waiting in the events' producer queue would hold
    up the spool replay (which waits for that queue to drain) during an outage. Reports are
    best effort, expire after a few intervals and are only sent while the broker answers;
    the Prometheus collector above is the view that also works while it does not.
    """

    def __init__(self, topic: str, kafka_common: Mapping[str, Any], name: str, interval: float) -> None:
        self.topic = topic
        self.name = name
        self.interval = interval
        self.labels = {"producer": name}
        self.key = name.encode()
        self.sent = 0
        self._config = client_config(kafka_common, {
            "linger.ms": 100,
            "message.timeout.ms": int(max(3 * interval, 5.0) * 1000),
            "queue.buffering.max.messages": 10_000,
        }, {"logger": logging.getLogger("producers.librdkafka"), "error_cb": self._on_error})
        self._producer: Producer | None = None
        self._next = 0.0

    def due(self, now: float) -> bool:
        return now >= self._next

    def report(self, snap: dict[str, Any], now: float) -> None:
        """Queue one record per figure (the producer is made on first use)."""
        self._next = now + self.interval
        if self._producer is None:
            self._producer = Producer(self._config)
        ts = time.time()
        try:
            for name, value in report_points(snap):
                self._producer.produce(self.topic, metric_record(name, self.labels, ts, value), self.key)
                self.sent += 1
        except (BufferError, KafkaException) as exc:
            log.debug("emitter %s: metrics report not queued: %s", self.name, exc)
        self._producer.poll(0)

    def close(self, timeout: float) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
            self._producer = None

    def _on_error(self, err: KafkaError) -> None:
        log.debug("emitter %s: metrics producer: %s", self.name, err.str())
