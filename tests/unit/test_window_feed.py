"""The window feed (stream_apps.alerts.feed): a batch's facts summed per model and window must file
exactly the counts that counting each prediction on its own would, in tumbling and hopping windows."""
from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from lineage.settings import AlertSettings
from lineage_native import window_facts
from stream_apps.alerts.completeness import window_counts
from stream_apps.alerts.feed import (
    Facts,
    RunEvent,
    batch_record,
    completeness_window,
    count_records,
    feed_records,
    read_entry,
)

T0_US = 1_760_000_000_000_000
TOPIC = "feed"


def _prediction(rng: random.Random, t_us: int) -> Facts:
    info = {
        "model_name": rng.choice(["credit", "fraud", "churn"]),
        "model_version": rng.choice(["", "7", "8"]),
        "training_run_id": rng.choice(["", "r1"]),
        "tier": rng.choice(["routine", "consequential", "flagged", ""]),
        "lineage_complete": rng.random() < 0.5,
        "snapshot_pointer": rng.choice(["", "seg/1"]),
        "unknown_model_version": rng.random() < 0.2,
    }
    return window_facts("inference", {"event_id": "e", "event_time": t_us, "producer": "https://svc"}, info)


def _run(t_us: int, event_type: str = "START", run_id: str = "r-1") -> Facts:
    event = {"eventType": event_type, "eventTime": t_us, "run": {"runId": run_id},
             "job": {"namespace": "etl", "name": "orders"}, "producer": "https://etl"}
    return window_facts("dataset", event)


def _filed(window: object, records: list) -> Counter[tuple[str, tuple[float, float], str, str]]:
    """What the windowed table adds up from ``records``: (model, window, metric, label) -> count,
    each record filed under the windows of its timestamp, as Faust files a stream record."""
    out: Counter[tuple[str, tuple[float, float], str, str]] = Counter()
    for r in records:
        entry = read_entry(r.value)
        for span in window.ranges(r.timestamp_ms / 1000):  # type: ignore[attr-defined]
            for metric, label, n in entry.counts:
                out[(r.key.decode(), tuple(span), metric, label)] += n
    return out


@pytest.mark.parametrize("step", [None, 20.0, 15.0])
def test_summed_counts_file_exactly_what_each_prediction_would(step: float | None) -> None:
    rng = random.Random(7)
    cfg = AlertSettings(window_s=60.0, window_step_s=step)
    window = completeness_window(cfg)
    # Event times over ~5 windows, some on exact window and step boundaries, out of order.
    times = [T0_US + rng.randrange(0, 300_000_000) for _ in range(3_000)]
    times += [T0_US - T0_US % 60_000_000 + k * 5_000_000 for k in range(40)]
    rng.shuffle(times)
    facts = [_prediction(rng, t) for t in times] + [_run(T0_US)]
    records = count_records(TOPIC, window, facts)

    expected: Counter[tuple[str, tuple[float, float], str, str]] = Counter()
    for f in facts:
        if f[7] is None:
            continue
        for span in window.ranges((f[1] // 1000) / 1000):  # type: ignore[attr-defined]
            for metric, label in window_counts(f[7]):
                expected[(f[7][0], tuple(span), metric, label)] += 1
    assert _filed(window, records) == expected
    assert all(r.topic == TOPIC and r.key for r in records)
    # Far fewer records than predictions: one per model and set of windows.
    assert len(records) <= 3 * len({tuple(window.ranges((t // 1000) / 1000)) for t in times})  # type: ignore[attr-defined]


def test_an_event_dated_at_or_before_the_epoch_gets_a_timestamp_kafka_takes() -> None:
    window = completeness_window(AlertSettings())
    rng = random.Random(3)
    facts = [_prediction(rng, t) for t in (-5_000_000_000, 0, 999)]
    records = count_records(TOPIC, window, facts)
    assert {r.timestamp_ms for r in records} == {1}  # never 0 (librdkafka: "now") nor negative
    assert len(records) == len({f[7][0] for f in facts if f[7]})  # one window: one record per model


def test_batch_record_carries_runs_figures_and_emitters() -> None:
    rng = random.Random(1)
    now = T0_US / 1e6 + 2.0
    facts = [_prediction(rng, T0_US), _run(T0_US - 1_000_000, "COMPLETE"), _run(T0_US, "START", run_id=""),
             window_facts("inference", {"event_id": "e", "event_time": T0_US + 5_000_000},
                          {"model_name": "m", "tier": "consequential"})]
    record = batch_record(TOPIC, facts, now)
    assert record is not None and record.key is None and record.timestamp_ms == 0
    entry = read_entry(record.value)
    assert entry.runs == [RunEvent("r-1", "COMPLETE", T0_US - 1_000_000, "etl/orders", "dataset", False)]
    assert entry.kinds == {"inference": 2, "dataset": 2}
    assert sum(entry.tiers.values()) == 2 - (facts[0][7][3] == "")  # type: ignore[index]
    assert entry.tiers.get("consequential", 0) >= 1
    assert entry.latency == [2.0, 3.0, 2.0, 0.0]  # clock skew counts as 0
    assert entry.emitters == ["https://etl", "https://svc"]  # the one without a producer is left out
    assert batch_record(TOPIC, [], now) is None
    assert feed_records(TOPIC, completeness_window(AlertSettings()), [], now) == []


def test_read_entry_takes_the_earlier_per_prediction_records_and_refuses_others() -> None:
    entry = read_entry(orjson.dumps([["inf", "credit"], ["conseq", "credit"]]))
    assert entry.counts == [("inf", "credit", 1), ("conseq", "credit", 1)] and entry.runs == []
    for bad in (b"not json", b"42", b'"text"', b'{"counts": [["inf"]]}', b'{"runs": [[1, 2]]}', b'{"kinds": [1]}',
                b'{"tiers": {"a": "many"}}', b'{"latency": ["soon"]}', b'{"counts": 5}'):
        with pytest.raises((ValueError, TypeError)):
            read_entry(bad)
