"""`lineage bench pipeline`: one `lineage worker` against a bare confluent-kafka loop, same events.

Both read the same pre-produced events (70% inference with a 6-value feature snapshot, 10%
each dataset/feature/training) from private topics. The baseline consumes, decodes (the
project codec) and produces each message unchanged; the pipeline validates, enriches, samples,
seals and routes into the graph and hold topics. Rates are measured on the output topics: the
span between the first and last output record's broker timestamps, so start-up (group join,
table recovery) is excluded from both. Needs a broker and Redis (`lineage stack up`); when
none answers, the local stack is started for the run and stopped afterwards.

What each side cost is measured over the same spans (:mod:`shell.bench.cpu`, Linux only): CPU
microseconds per event of the loop's process, of the worker (its processing child included; and
of its own process alone: the Faust app and the consumer loop), of the local broker and Redis when
the stack's pid files name them (the loop uses no Redis), and of the whole machine.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lineage.codec import Codec
from lineage.pii.sealing import KeyRing, Sealer, seal_record
from lineage.exceptions import DeliveryError, StackError
from lineage.kafka import ACKED_PRODUCER, client_config, produce_and_wait
from lineage.settings import Settings, TopicSettings, settings_to_env
from lineage.redact import redact_text
from lineage.topics import ensure_topics, remove_deployment
from shell.bench import cpu

EVENTS = 60_000


def _records(n: int) -> list[tuple[str, bytes, dict[str, Any]]]:
    now = int(time.time() * 1_000_000)
    out: list[tuple[str, bytes, dict[str, Any]]] = []
    for i in range(n):
        eid = str(uuid.uuid4())
        r = i % 10
        if r < 7:
            rec: dict[str, Any] = {
                "event_id": eid, "correlation_id": None, "event_time": now, "producer": "https://acme/fraud-api",
                "endpoint": "fraud-v2", "model_name": "fraud", "model_version": "12", "prediction_id": f"pred-{eid}",
                "decision_type": "approve" if i % 50 else "deny", "risk_score": (i % 1000) / 1000.0 * 0.79,
                "regulatory_class": None, "subject_id": f"cust-{i % 5_000}", "training_run_id": None,
                "feature_snapshot": {"feature_set": {"name": "fraud_features", "version": "7"}, "values": {
                    "amount": str(120.5 + i % 100), "country": '"DE"', "merchant_category": '"5411"',
                    "account_age_days": "812", "txn_count_24h": str(i % 17), "device_trusted": "true"}},
            }
            out.append(("inference", rec["prediction_id"].encode(), rec))
            continue
        kind = ("dataset", "feature", "training")[r - 7]
        run_id = str(uuid.uuid4())
        rec = {
            "event_id": eid, "correlation_id": None, "eventType": "COMPLETE", "eventTime": now,
            "producer": "https://acme/etl", "run": {"runId": run_id, "parentRunId": None, "facets": {}},
            "job": {"namespace": "etl", "name": f"{kind}-job", "facets": {}},
            "inputs": [{"namespace": "postgres://db:5432", "name": "shop.public.orders", "version": None, "facets": {}}],
            "outputs": [{"namespace": "s3://lake", "name": "orders/clean", "version": None, "facets": {}}],
        }
        if kind == "feature":
            rec["feature_set"] = {"name": "fraud_features", "version": "7", "features": ["amount"], "entity": "customer"}
        if kind == "training":
            rec["training"] = {"model_name": "fraud", "model_version": f"v{i}", "artifact_digest": "sha256:00",
                               "code_version": "abc", "feature_sets": [{"name": "fraud_features", "version": "7"}]}
        out.append((kind, run_id.encode(), rec))
    return out


def _produce(settings: Settings, items: list[tuple[str, bytes, bytes]]) -> None:
    p = Producer(client_config(settings.kafka_common(), {"linger.ms": 20, "compression.type": "lz4",
                                                         "queue.buffering.max.messages": 1_000_000}))
    try:
        produce_and_wait(p, ((topic, key, value, None, 0) for topic, key, value in items), 120)
    except DeliveryError as exc:
        raise StackError(f"bench input was not delivered: {exc}") from None


def _span(settings: Settings, topic: str, expect: int, timeout: float, alive: Any = None) -> tuple[int, float, float]:
    """(records, first and last record timestamps in epoch seconds) once ``expect`` arrived."""
    c = Consumer(client_config(settings.kafka_common(), {"group.id": f"bench-read-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < expect and time.monotonic() < deadline:
            stamps += [m.timestamp()[1] for m in c.consume(10_000, 1.0) if m.error() is None]
            if alive is not None and not alive():
                raise StackError(f"the bench worker exited early: {alive.__self__.tail(5)}")
    finally:
        c.close()
    if len(stamps) < expect:
        raise StackError(f"only {len(stamps)} of {expect} records reached {topic} within {timeout:.0f}s")
    return len(stamps), min(stamps) / 1000.0, max(stamps) / 1000.0


def _passthrough(settings: Settings, topics: list[str], out_topic: str, n: int) -> None:
    codec = Codec.from_settings(settings)
    c = Consumer(client_config(settings.kafka_common(), {"group.id": f"{settings.app_id}.passthrough",
                                                         "auto.offset.reset": "earliest", "enable.auto.commit": True}))
    p = Producer(client_config(settings.kafka_common(), {**ACKED_PRODUCER, "compression.type": "lz4",
                                                         "queue.buffering.max.messages": 1_000_000}))
    c.subscribe(topics)
    seen = 0
    deadline = time.monotonic() + 300
    try:
        while seen < n and time.monotonic() < deadline:
            for m in c.consume(2_000, 0.5):
                if m.error() is not None:
                    continue
                codec.decode(m.value() or b"")
                while True:
                    try:
                        p.produce(out_topic, m.value(), m.key())
                        break
                    except BufferError:
                        p.poll(0.05)
                seen += 1
            p.poll(0)
        p.flush(60)
    finally:
        c.close()


def _noop_worker(bootstrap: str, app_id: str, topics: list[str], n: int, out: str, port: int) -> None:
    """A Faust agent that only takes and acks (no decode, no output): Faust's own consumption ceiling."""
    import faust

    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", datadir=f"{out}.d",
                    consumer_auto_offset_reset="earliest", web_port=port, broker_max_poll_records=5_000)
    seen = {"n": 0, "t0": 0.0}

    @app.agent(app.topic(*topics, key_serializer="raw", value_serializer="raw"), concurrency=1)
    async def noop(stream: Any) -> None:
        async for events in stream.noack_take(5_000, within=0.2):
            if not seen["t0"]:
                seen["t0"] = time.perf_counter()
            for event in events:
                await stream.ack(event)
            seen["n"] += len(events)
            if seen["n"] >= n and not Path(out).exists():
                # Renamed into place whole; the bench then stops this worker with SIGTERM, so it
                # leaves its group (which the bench removes) instead of vanishing from it.
                tmp = Path(f"{out}.tmp")
                tmp.write_text(str(seen["n"] / max(1e-3, time.perf_counter() - seen["t0"])))
                tmp.replace(out)

    from stream_apps.app import create_worker

    create_worker(app, "warning").execute_from_commandline()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stack_up(settings: Settings) -> Any:
    try:
        AdminClient(settings.kafka_common()).list_topics(timeout=5)
        import redis

        redis.Redis.from_url(settings.redis_url, socket_timeout=5).ping()
        return None
    except Exception:  # nothing answers: bring the local stack up for this run
        from shell.stack import Stack

        stack = Stack(settings)
        stack.up()
        return stack


def _stack_pids(data_dir: Path, pattern: str) -> list[int]:
    """Live pids of the local stack's processes whose pid files match ``pattern`` (none for a
    broker or Redis this machine's stack did not start)."""
    from shell.stack.process import ManagedProcess

    pids = (ManagedProcess.from_pid_file(path).pid() for path in sorted((data_dir / "run").glob(pattern)))
    return [pid for pid in pids if pid is not None]


def _cpu_figures(sampler: cpu.CpuSampler | None, prefix: str, groups: tuple[str, ...], events: int,
                 start: float, end: float) -> dict[str, float]:
    """``<prefix>_<group>_cpu_us_per_event`` for ``groups`` and the machine over one measured span
    (a group that used nothing, e.g. a broker the local stack did not start, is left out)."""
    if sampler is None:
        return {}
    spent = sampler.spent(start, end)
    figures = {f"{prefix}_{name}_cpu_us_per_event": v for name, v in cpu.per_event(spent, events).items()
               if name == cpu.MACHINE or (name in groups and spent[name] > 0)}
    figures[f"{prefix}_machine_busy_cores"] = round(spent[cpu.MACHINE] / max(1e-3, end - start), 2)
    return figures


def _remove_run(s: Settings, progress: Any) -> None:
    """Leave the stack as the run found it: the run's topics (the passthrough's, the worker's and
    the Faust apps' own), consumer groups and Redis keys (held snapshots, run states, data keys)
    all go. What cannot is named in a warning on stderr, which never hides the run's own error."""
    import redis

    try:
        remove_deployment(s, redis.Redis.from_url(s.redis_url, socket_timeout=30))
    except (StackError, redis.RedisError) as exc:
        progress.console.print(f"lineage bench: warning: the run left traces on the stack: {redact_text(str(exc))}",
                               markup=False, highlight=False)


def run(settings: Settings, progress: Any) -> dict[str, float | int | str]:
    tag = uuid.uuid4().hex[:8]
    data_dir = Path(settings.data_dir).resolve() / f"bench-pipeline-{tag}"
    s = settings.model_copy(update={
        "data_dir": data_dir,
        "app_id": f"bench-{tag}",
        "topics": TopicSettings(prefix=f"bench{tag}", openlineage=f"bench{tag}.openlineage.events",
                                partitions=settings.topics.partitions),
    })
    started_stack = _stack_up(settings)
    task = progress.add_task("pipeline bench", total=5)
    stack_dir = Path(settings.data_dir).resolve()
    worker_pid: list[int] = []  # the bench worker's, once started
    broker_pids, redis_pids = _stack_pids(stack_dir, "kafka-*.pid"), _stack_pids(stack_dir, "redis.pid")  # up by now
    sampler = cpu.CpuSampler({
        "loop": cpu.Group(lambda: [os.getpid()]),
        "worker": cpu.Group(lambda: worker_pid, descendants=True),
        "worker_main": cpu.Group(lambda: worker_pid),  # its own process: the Faust app and the consumer loop
        "broker": cpu.Group(lambda: broker_pids),
        "redis": cpu.Group(lambda: redis_pids),
    }).start() if cpu.available() else None
    try:
        ensure_topics(s)
        pass_topic = f"bench{tag}.passthrough"
        admin = AdminClient(s.kafka_common())
        admin.create_topics([NewTopic(pass_topic, s.topics.partitions, s.topics.replication)])[pass_topic].result(30)
        codec = Codec.from_settings(s)
        events = _records(EVENTS)
        # As emitters write them: inference PII sealed for this deployment (the worker opens the seal).
        sealer = Sealer(KeyRing.under(s.keys_dir).ensure())
        events = [(k, key, seal_record(sealer, rec) if k == "inference" else rec) for k, key, rec in events]
        _produce(s, [(s.topics.event_topics[k], key, codec.encode(k, rec)) for k, key, rec in events])
        progress.update(task, advance=1)

        _passthrough(s, list(s.topics.event_topics.values()), pass_topic, EVENTS)
        pass_n, pass_first, pass_last = _span(s, pass_topic, EVENTS, 60)
        progress.update(task, advance=1)

        from shell.stack.process import ManagedProcess

        worker = ManagedProcess.in_data_dir(
            data_dir, "bench-worker",
            [str(Path(sys.executable).parent / "lineage"), "worker", "--log-level", "warning"],
            env=settings_to_env(s),
        )
        worker_pid.append(worker.start())
        try:
            pipe_n, pipe_first, pipe_last = _span(s, s.topics.graph, EVENTS, 600, worker.is_running)
        finally:
            worker.stop(timeout=30)
        if sampler is not None:
            sampler.stop()
        progress.update(task, advance=1)

        rate_file = data_dir / "noop.rate"
        noop = ManagedProcess.in_data_dir(
            data_dir, "bench-noop",
            [sys.executable, "-m", "shell.bench.pipeline", s.kafka_bootstrap, f"{s.app_id}-noop", str(rate_file),
             str(_free_port()), str(EVENTS), *s.topics.event_topics.values()],
        )
        noop.start()
        deadline = time.monotonic() + 300
        while not rate_file.exists() and noop.is_running() and time.monotonic() < deadline:
            time.sleep(0.5)
        noop.stop(timeout=30)
        noop_rate = float(rate_file.read_text()) if rate_file.exists() else float("nan")
        progress.update(task, advance=1)
    finally:
        if sampler is not None:
            sampler.stop()
        _remove_run(s, progress)
        if started_stack is not None:
            started_stack.down()
    shutil.rmtree(data_dir, ignore_errors=True)
    pipe_s, pass_s = max(1e-3, pipe_last - pipe_first), max(1e-3, pass_last - pass_first)
    pipeline_rate, pass_rate = pipe_n / pipe_s, pass_n / pass_s
    return {
        "pipeline_events": pipe_n,
        "pipeline_events_per_s": round(pipeline_rate, 1),
        "passthrough_events_per_s": round(pass_rate, 1),
        "pipeline_vs_passthrough": round(pipeline_rate / pass_rate, 3),
        "pipeline_target_ratio": 0.5,
        "faust_noop_events_per_s": round(noop_rate, 1),
        "faust_noop_vs_passthrough": round(noop_rate / pass_rate, 3),
        "machine_cores": os.cpu_count() or 0,
        **_cpu_figures(sampler, "passthrough", ("loop", "broker"), pass_n, pass_first, pass_last),
        **_cpu_figures(sampler, "pipeline", ("worker", "worker_main", "broker", "redis"), pipe_n, pipe_first, pipe_last),
    }


if __name__ == "__main__":  # the no-op Faust worker, run as a child process by run()
    _noop_worker(sys.argv[1], sys.argv[2], sys.argv[6:], int(sys.argv[5]), sys.argv[3], int(sys.argv[4]))
