"""`/metrics` (and `/metrics/pipeline`) on the running sink parse with prometheus-client's
text-format parser and carry the live lag / throughput / dead-letter / alert values."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import wait_until
from integration.alerts_support import http_text, start_pipeline
from integration.worker_support import produce_all

pytestmark = [pytest.mark.integration]


def test_metrics_parse_and_show_lag(stack, tmp_path: Path) -> None:
    for pipe in start_pipeline(stack, tmp_path, with_worker=False, sample_interval_s=0.5, lag_threshold=10,
                               lag_window_s=1):
        s = pipe.settings
        # A consumer group that committed offset 0 on the dead-letter topic, then 30 records (one key) behind it.
        from confluent_kafka import Consumer, TopicPartition

        group = f"{s.app_id}-probe"
        c = Consumer({**s.kafka_common(), "group.id": group, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition(s.topics.deadletter, p, 0) for p in range(s.topics.partitions)],
                 asynchronous=False)
        c.close()
        produce_all(s, [(s.topics.deadletter, b"k", b"x", None)] * 30)
        spool = {"name": "producer_spool_depth", "labels": {"producer": "etl-1"}, "value": 7, "ts": time.time_ns() // 1000}
        produce_all(s, [(s.topics.metrics, None, json.dumps(spool).encode(), None)])

        def lag_visible() -> dict[str, list]:
            text, _ = http_text(s, "/metrics/pipeline")
            fams = {f.name: f.samples for f in text_string_to_metric_families(text)}
            lag = [x for x in fams.get("lineage_consumer_lag", []) if x.labels.get("group") == group]
            spooled = [x for x in fams.get("lineage_producer_spool_depth", []) if x.labels.get("producer") == "etl-1"]
            return fams if lag and max(x.value for x in lag) == 30 and spooled else {}

        fams = wait_until(lag_visible, 60, f"lag 30 for the probe group in /metrics\n{pipe.logs()}", 0.5)
        assert fams["lineage_deadletter"][0].value == 30
        assert "lineage_topic_messages_per_second" in fams and "lineage_alerts_active" in fams
        # The lag alert for the probe group (threshold 10) shows up as an active alert gauge.
        text = wait_until(lambda: (lambda t: t if 'alertname="ConsumerLagHigh"' in t else "")(
            http_text(s, "/metrics/pipeline")[0]), 30, "ConsumerLagHigh in lineage_alerts_active", 0.5)
        assert list(text_string_to_metric_families(text))
        # `lineage alerts --active --json` reads the same alert back from ClickHouse through the sink API.
        import subprocess
        import sys

        def cli_shows() -> list:
            out = subprocess.run([sys.executable, "-m", "shell", "alerts", "--active", "--json"], env=pipe.env,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            rows = json.loads(out.stdout)
            return [r for r in rows if r["alert_name"] == "ConsumerLagHigh" and r["labels"]["group"] == group]

        (row,) = wait_until(cli_shows, 60, "the alert in `lineage alerts --active`", 1.0)
        assert row["state"] == "firing" and group in row["summary"]
        # `/metrics` itself: the sink's counters followed by the same pipeline figures, one parse.
        body, ctype = http_text(s, "/metrics")
        assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
        fams = {f.name: f.samples for f in text_string_to_metric_families(body)}
        assert "lineage_sink_messages_consumed" in fams and fams["lineage_sink_metrics_provider_failures"][0].value == 0
        lag = [x for x in fams["lineage_consumer_lag"] if x.labels.get("group") == group]
        assert lag and max(x.value for x in lag) == 30
        assert any(x.labels.get("alertname") == "ConsumerLagHigh" for x in fams["lineage_alerts_active"])
