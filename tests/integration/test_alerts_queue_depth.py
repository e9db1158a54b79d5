"""Queue depth for real: a paused worker builds lag past the threshold on every partition; the
lag alert fires once per partition (topic, ClickHouse, webhook) and resolves after catch-up."""
from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import wait_until
from integration.alerts_support import (
    Pipeline,
    ch_alerts,
    committed_caught_up,
    http_json,
    once_each,
    start_pipeline,
    topic_alerts,
)
from factories import inference_event
from integration.worker_support import encode_many, produce_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THRESHOLD = 500
PER_PARTITION = 800


@pytest.fixture(scope="module")
def pipe(stack, tmp_path_factory) -> Iterator[Pipeline]:
    yield from start_pipeline(
        stack, Path(tmp_path_factory.mktemp("qd")),
        lag_threshold=THRESHOLD, lag_window_s=3, sample_interval_s=1, cooldown_s=300,
        window_s=10, eval_interval_s=0.5, dlq_rate_threshold=1e9, spool_threshold=100,
    )


def _inference(s, n: int) -> list[tuple[str, bytes, bytes, None]]:
    events = [inference_event(model="lagtest", version="1") for _ in range(n)]
    raws = encode_many(s, "inference", events)
    return [(s.topics.inference, uuid.uuid4().hex.encode(), raw, None) for raw in raws]


def test_lag_alert_fires_per_partition_and_resolves(pipe: Pipeline) -> None:
    s = pipe.settings
    parts = s.topics.partitions
    # Warm up: the worker consumes and commits, so its group shows in the admin API.
    produce_all(s, _inference(s, 60))
    wait_until(lambda: committed_caught_up(s, s.events_group, s.topics.inference), 120,
               f"worker to commit on the inference topic\n{pipe.logs()}", 0.5)

    assert pipe.worker.signal(signal.SIGSTOP)
    try:
        produce_all(s, _inference(s, PER_PARTITION * parts * 2))  # keys spread evenly: > threshold everywhere
        firing = wait_until(
            lambda: (lambda got: got if len(got) >= parts else None)(
                {a["labels"]["partition"] for a in pipe.hook.alerts("ConsumerLagHigh")
                 if a["status"] == "firing" and a["labels"]["topic"] == s.topics.inference}),
            60, f"lag alerts on all {parts} partitions\n{pipe.logs()}", 0.5)
        assert firing == {str(p) for p in range(parts)}
        active = http_json(s, "/api/alerts")["active"]
        assert sum(a["name"] == "ConsumerLagHigh" for a in active) >= parts
    finally:
        pipe.worker.signal(signal.SIGCONT)

    def resolved() -> bool:
        states = once_each([{"fingerprint": a["fingerprint"], "state": a["status"], "n": a["labels"]["alertname"]}
                            for a in pipe.hook.alerts("ConsumerLagHigh")], "n", {"ConsumerLagHigh"})
        return bool(states) and all(v == ["firing", "resolved"] for v in states.values())

    wait_until(resolved, 120, f"lag alerts to resolve after catch-up\n{pipe.logs()}", 0.5)

    # Exactly once per fingerprint and state: webhook, alerts topic, ClickHouse.
    # (Compared for the inference-topic alerts this test caused; on a slow machine the catch-up
    # burst may briefly lag other groups/topics too, and those may still be in flight.)
    ours = {a["fingerprint"] for a in pipe.hook.alerts("ConsumerLagHigh") if a["labels"]["topic"] == s.topics.inference}
    assert len(ours) == parts
    hook = {fp: v for fp, v in once_each([{"fingerprint": a["fingerprint"], "state": a["status"], "n": a["labels"]["alertname"]}
                                          for a in pipe.hook.alerts()], "n", {"ConsumerLagHigh"}).items() if fp in ours}
    topic = {fp: v for fp, v in once_each(topic_alerts(s), "alert_name", {"ConsumerLagHigh"}).items() if fp in ours}
    assert topic == hook, (topic, hook)

    def in_clickhouse() -> dict[str, list[str]] | None:
        rows = {fp: v for fp, v in once_each(ch_alerts(s), "alert_name", {"ConsumerLagHigh"}).items() if fp in ours}
        return rows if set(rows) == ours and all(len(v) == 2 for v in rows.values()) else None

    rows = wait_until(in_clickhouse, 60, f"alerts in ClickHouse\n{pipe.logs()}", 1.0)
    assert all(sorted(v) == ["firing", "resolved"] for v in rows.values())
    assert all(v == ["firing", "resolved"] for v in hook.values())
    assert not {a["fingerprint"] for a in http_json(s, "/api/alerts")["active"]} & ours


def test_producer_spool_depth_alert(pipe: Pipeline) -> None:
    """A spool-depth report over the threshold (from a producer, on the metrics topic) fires; a low one resolves."""
    import json
    import time

    s = pipe.settings

    def report(value: int) -> None:
        rec = {"name": "producer_spool_depth", "labels": {"producer": "scoring-svc"}, "value": value,
               "ts": time.time_ns() // 1000}
        produce_all(s, [(s.topics.metrics, b"scoring-svc", json.dumps(rec).encode(), None)])

    report(5_000)
    wait_until(lambda: any(a["status"] == "firing" for a in pipe.hook.alerts("ProducerSpoolDeep")), 30,
               f"spool alert\n{pipe.logs()}", 0.5)
    report(0)
    wait_until(lambda: any(a["status"] == "resolved" for a in pipe.hook.alerts("ProducerSpoolDeep")), 30,
               f"spool alert to resolve\n{pipe.logs()}", 0.5)
    (firing,) = [a for a in pipe.hook.alerts("ProducerSpoolDeep") if a["status"] == "firing"]
    assert "scoring-svc" in firing["annotations"]["summary"]


def test_a_real_emitter_backlog_fires_and_resolves_the_spool_alert(pipe: Pipeline, tmp_path: Path) -> None:
    """An emitter whose client queue holds one event at a time (50 ms linger) builds a spool backlog;
    its own reports on the metrics topic fire the alert, and it resolves once the spool drained."""
    from lineage.pii.sealing import KeyRing
    from lineage.settings import ProducerSettings
    from producers import Emitter, EmitterConfig

    slow = pipe.settings.model_copy(update={
        "data_dir": tmp_path, "producer": ProducerSettings(queue_size=1, linger_ms=50, metrics_interval_s=0.5)})
    n = 600

    def ours(status: str) -> list[dict]:
        return [a for a in pipe.hook.alerts("ProducerSpoolDeep")
                if a["status"] == status and a["labels"].get("producer") == "slow-svc"]

    # a service elsewhere: its own data dir, the pipeline's public key in its configuration
    config = EmitterConfig.from_settings(slow, seal_public_key=KeyRing.under(pipe.settings.keys_dir).published())
    with Emitter(config, "slow-svc") as em:
        for _ in range(n):
            em.emit_record("inference", inference_event(model="spooltest", version="1"))
        wait_until(lambda: ours("firing"), 60, f"spool alert from the emitter's reports\n{pipe.logs()}", 0.5)
        assert em.spool.depth > 0  # fired on a backlog that is still there, not on a stale report
        assert em.flush(120) == 0
        assert em.stats.delivered == n
        wait_until(lambda: ours("resolved"), 90, f"spool alert to resolve after the drain\n{pipe.logs()}", 0.5)
    (firing,) = ours("firing")
    assert "slow-svc" in firing["annotations"]["summary"]
