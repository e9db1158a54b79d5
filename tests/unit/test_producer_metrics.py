"""What the emitter reports to the metrics topic, and the record format every publisher shares."""
from __future__ import annotations

import math

import orjson

from lineage.metric_records import metric_record
from producers.metrics import REPORTED, ProducerStats, report_points


def _snap(**over: object) -> dict[str, object]:
    snap: dict[str, object] = {
        "queue_depth": 3, "spool_depth": 12_000, "spool_bytes": 4_096_000, "delivered": 50, "failed": 2,
        "delivery_errors": 1, "delivery_latency_p99_s": 0.025,
    }
    snap.update(over)
    return snap


def test_every_reported_figure_is_a_point() -> None:
    points = dict(report_points(_snap()))
    assert set(points) == {name for name, _ in REPORTED}
    assert points["producer_spool_depth"] == 12_000.0
    assert points["producer_spool_bytes"] == 4_096_000.0
    assert points["producer_events_failed"] == 2.0
    assert points["producer_delivery_latency_p99_seconds"] == 0.025


def test_latency_before_any_delivery_and_overflow_are_left_out() -> None:
    assert "producer_delivery_latency_p99_seconds" not in dict(report_points(_snap(delivery_latency_p99_s=None)))
    assert "producer_delivery_latency_p99_seconds" not in dict(report_points(_snap(delivery_latency_p99_s=math.inf)))
    assert dict(report_points(_snap(delivery_latency_p99_s=None)))["producer_spool_depth"] == 12_000.0


def test_latency_quantile_comes_from_the_histogram() -> None:
    stats = ProducerStats()
    assert stats.latency_quantile(0.99) is None
    for _ in range(99):
        stats.observe_latency(2_000_000)  # 2 ms -> the 2.5 ms bucket
    stats.observe_latency(400_000_000)  # 400 ms -> the 0.5 s bucket
    assert stats.latency_quantile(0.5) == 0.0025
    assert stats.latency_quantile(0.99) == 0.0025
    assert stats.latency_quantile(1.0) == 0.5


def test_metric_record_is_what_the_sink_reads() -> None:
    rec = orjson.loads(metric_record("producer_spool_depth", {"producer": "svc"}, 1_781_481_600.25, 7.0))
    assert rec == {"name": "producer_spool_depth", "labels": {"producer": "svc"},
                   "ts": "2026-06-15T00:00:00.250000Z", "value": 7.0}
