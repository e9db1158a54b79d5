"""`lineage bench emit`: the SDK's emit path against openlineage-python's Kafka transport.

Both send the same realistic inference event (model version, prediction, decision, risk score,
subject, a 6-value feature snapshot) to private topics on the broker at
``settings.kafka_bootstrap`` with the same librdkafka settings (idempotent, acks=all, the
configured compression and linger). Rates count until every event is acknowledged
(``flush``). ``emit()`` latency is each call's wall time in the saturated loop, while the
background thread competes for the GIL: the pessimistic case.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from lineage.exceptions import StackError
from lineage.pii.sealing import KeyRing
from lineage.settings import Settings, TopicSettings
from lineage.topics import ensure_topics

EMIT_EVENTS = 100_000
OPENLINEAGE_EVENTS = 20_000


def _check_broker(settings: Settings) -> AdminClient:
    admin = AdminClient(settings.kafka_common())
    try:
        admin.list_topics(timeout=10)
    except KafkaException as exc:
        raise StackError(f"no Kafka broker answers at {settings.kafka_bootstrap} ({exc}); run `lineage stack up`") from None
    return admin


def _percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def _features(i: int) -> dict[str, Any]:
    return {"amount": 120.5 + i % 100, "country": "DE", "merchant_category": "5411", "account_age_days": 812,
            "txn_count_24h": i % 17, "device_trusted": True}


def bench_emitter(settings: Settings, n: int, progress: Any) -> dict[str, float]:
    from producers import Emitter, EmitterConfig, FeatureSetRef, FeatureSnapshot, InferenceEvent

    task = progress.add_task("emit (producers SDK)", total=n)
    KeyRing.under(settings.keys_dir).ensure()  # the SDK seals each event's PII for the pipeline
    em = Emitter(EmitterConfig.from_settings(settings), "bench")
    try:
        fs = FeatureSetRef("fraud_features", "7")
        lat = [0] * n
        clock = time.perf_counter_ns
        emit = em.emit
        start = time.perf_counter()
        for i in range(n):
            event = InferenceEvent(
                producer="https://github.com/acme/fraud-api/v2.3.1", endpoint="fraud-v2", model_name="fraud",
                model_version="12", prediction_id=f"pred-{i}", decision_type="approve" if i % 10 else "deny",
                risk_score=(i % 1000) / 1000.0, regulatory_class="credit", subject_id=f"cust-{i % 50_000}",
                feature_snapshot=FeatureSnapshot(_features(i), fs),
            )
            t0 = clock()
            emit(event)
            lat[i] = clock() - t0
            if i % 5000 == 0:
                progress.update(task, completed=i)
        emitted = time.perf_counter() - start
        left = em.flush(120)
        elapsed = time.perf_counter() - start
        if left:
            raise StackError(f"{left} events were not delivered within 120 s")
    finally:
        em.close(timeout=5)
    progress.update(task, completed=n)
    lat.sort()
    return {
        "emit_events_per_s": n / elapsed,
        "emit_calls_per_s": n / emitted,
        "emit_call_p50_us": _percentile(lat, 0.50),
        "emit_call_p99_us": _percentile(lat, 0.99),
        "emit_call_p999_us": _percentile(lat, 0.999),
    }


def bench_openlineage(settings: Settings, topic: str, n: int, progress: Any, via_client: bool) -> float:
    import attr
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import RunFacet
    from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

    @attr.define
    class InferenceRunFacet(RunFacet):
        endpoint: str
        model_name: str
        model_version: str
        prediction_id: str
        decision_type: str
        risk_score: float
        regulatory_class: str
        subject_id: str
        feature_snapshot: dict  # type: ignore[type-arg]

    from producers.config import EmitterConfig
    from producers.emitter import producer_config

    config = {k: str(v) for k, v in producer_config(EmitterConfig.from_settings(settings)).items()}
    config["queue.buffering.max.messages"] = str(max(n * 2, 100_000))  # flush: false never polls
    transport = KafkaTransport(KafkaConfig(config=config, topic=topic, flush=False))
    client = OpenLineageClient(transport=transport)
    send = client.emit if via_client else transport.emit
    label = "openlineage-python client" if via_client else "openlineage-python transport"
    task = progress.add_task(label, total=n)
    start = time.perf_counter()
    for i in range(n):
        facet = InferenceRunFacet(
            endpoint="fraud-v2", model_name="fraud", model_version="12", prediction_id=f"pred-{i}",
            decision_type="approve" if i % 10 else "deny", risk_score=(i % 1000) / 1000.0, regulatory_class="credit",
            subject_id=f"cust-{i % 50_000}",
            feature_snapshot={"feature_set": {"name": "fraud_features", "version": "7"}, "values": _features(i)},
        )
        send(RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime()),
            run=Run(runId=str(uuid.uuid4()), facets={"inference": facet}),
            job=Job(namespace="fraud-api", name="fraud-v2"),
            producer="https://github.com/acme/fraud-api/v2.3.1",
        ))
        if i % 2000 == 0:
            progress.update(task, completed=i)
    assert transport.producer is not None
    left = transport.producer.flush(120)
    elapsed = time.perf_counter() - start
    progress.update(task, completed=n)
    if left:
        raise StackError(f"openlineage-python left {left} events undelivered after 120 s")
    return n / elapsed


def run(settings: Settings, progress: Any) -> dict[str, float | int | str]:
    """Measure both paths in this run; private topics and spool are removed afterwards."""
    admin = _check_broker(settings)
    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="lineage-bench-"))
    bench_settings = settings.model_copy(update={
        "data_dir": tmp,
        "topics": TopicSettings(prefix=f"bench-{tag}", openlineage=f"bench-{tag}.openlineage.events",
                                partitions=settings.topics.partitions, replication=settings.topics.replication),
    })
    created = ensure_topics(bench_settings)
    try:
        figures: dict[str, float | int | str] = dict(bench_emitter(bench_settings, EMIT_EVENTS, progress))
        ol_topic = bench_settings.topics.openlineage
        figures["openlineage_client_events_per_s"] = bench_openlineage(bench_settings, ol_topic, OPENLINEAGE_EVENTS, progress, True)
        figures["openlineage_transport_events_per_s"] = bench_openlineage(
            bench_settings, ol_topic, OPENLINEAGE_EVENTS, progress, False)
        figures["emit_vs_openlineage_client_x"] = float(figures["emit_events_per_s"]) / float(figures["openlineage_client_events_per_s"])
        figures["emit_vs_openlineage_transport_x"] = float(figures["emit_events_per_s"]) / float(figures["openlineage_transport_events_per_s"])
        figures["emit_events"] = EMIT_EVENTS
        figures["openlineage_events"] = OPENLINEAGE_EVENTS
        return figures
    finally:
        if created:
            for fut in admin.delete_topics(created, operation_timeout=30).values():
                try:
                    fut.result()
                except KafkaException:
                    pass  # best effort: bench topics carry a unique prefix
        shutil.rmtree(tmp, ignore_errors=True)
