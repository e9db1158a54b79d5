"""The secured stack (`lineage stack up --secure`): Kafka with SASL/SCRAM and ACLs, Redis with ACL
users. Without credentials nothing is readable or writable; each role reaches only its topics;
the pipeline (SDK -> worker -> sink -> ClickHouse) still runs end to end with exact counts; and
no password shows up in CLI output, status reports, ``/health`` or logs."""
from __future__ import annotations

import json
import logging
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from factories import sdk_event
from helpers import Timeout, auth_headers, free_port, wait_until
from integration.secure_support import SecureStack
from integration.sink_support import LINEAGE, committed, end_offsets, env_for
from lineage.settings import Settings, settings_to_env
from lineage.topics import window_counts_topic
from shell.stack.acl import input_topics, output_topics
from shell.stack.process import ManagedProcess

pytestmark = [pytest.mark.integration]

_quiet = logging.getLogger("tests.secure.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False
#: Bounded client timeouts: a refused client fails fast instead of retrying for minutes.
FAST = {"socket.connection.setup.timeout.ms": 3000, "message.timeout.ms": 8000, "logger": _quiet}


def _conf(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {**settings.kafka_common(), **FAST, **extra}


def _produce(conf: dict[str, Any], topic: str, value: bytes = b"probe") -> KafkaError | None:
    """Produce one record and wait for its delivery report; the error, or None when it was stored."""
    reports: list[KafkaError | None] = []
    producer = Producer({k: v for k, v in conf.items() if k != "group.id"})
    producer.produce(topic, value, on_delivery=lambda err, msg: reports.append(err))
    wait_until(lambda: (producer.poll(0.2), reports)[1], 30, f"a delivery report for {topic}")
    return reports[0]


class _Problems(logging.Handler):
    """Collects what librdkafka reports going wrong (error callbacks, failed requests in its log)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "fail" in record.getMessage().lower():
            self.seen.append(record.getMessage())

    def error_cb(self, err: KafkaError) -> None:
        self.seen.append(str(err))


def _consume(conf: dict[str, Any], topic: str) -> tuple[list[bytes], list[str]]:
    """Read partition 0 of ``topic`` from the start until a record arrives or the client reports a failure."""
    problems = _Problems()
    log = logging.getLogger(f"tests.secure.consumer.{uuid.uuid4().hex[:8]}")
    log.addHandler(problems)
    log.propagate = False
    settings = {k: v for k, v in conf.items() if k != "message.timeout.ms"}
    consumer = Consumer({**settings, "group.id": f"probe-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                         "error_cb": problems.error_cb, "logger": log})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []

    def settled() -> bool:
        for msg in consumer.consume(10, timeout=0.5):
            if msg.error() is not None:
                problems.seen.append(str(msg.error()))
            elif msg.value() is not None:
                got.append(msg.value())
        return bool(got or problems.seen)

    try:
        wait_until(settled, 30, f"a record or a failure reading {topic}")
    finally:
        consumer.close()
    return got, problems.seen


def _records(admin: Settings, topic: str) -> int:
    consumer = Consumer({**admin.kafka_common(), "group.id": "secure-count", "logger": _quiet})
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def roles(secure_stack: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Settings]:
    return secure_stack.deployment(tmp_path_factory.mktemp("secure-deploy"), api_port=free_port())


# -- no credentials -----------------------------------------------------------------------

def test_kafka_without_credentials_can_neither_list_nor_produce_nor_consume(secure_stack, roles):
    admin = roles["admin"]
    topic = admin.topics.dataset
    assert _produce(_conf(roles["emitter"]), topic, b"seed") is None  # something there to (not) read
    controller = f"127.0.0.1:{secure_stack.stack_settings.kafka_controller_port}"
    anonymous = secure_stack.settings(None, topics=admin.topics)
    wrong_password = roles["emitter"].model_copy(update={"kafka_config": {
        **roles["emitter"].kafka_config, "sasl.password": "not-the-password"}})
    for who in (_conf(anonymous), _conf(anonymous, **{"bootstrap.servers": controller}), _conf(wrong_password)):
        with pytest.raises(KafkaException):
            AdminClient({k: v for k, v in who.items() if k != "message.timeout.ms"}).list_topics(timeout=8)
        assert _produce(who, topic, b"intruder") is not None
        got, errors = _consume(who, topic)
        assert got == [] and errors
    assert _records(admin, topic) == 1  # only the emitter's record: nothing an intruder sent


def test_redis_without_credentials_gets_nothing(secure_stack, roles):
    plain = redis.Redis.from_url(secure_stack.redis_address, socket_timeout=5)
    guessed = redis.Redis(host="127.0.0.1", port=secure_stack.stack_settings.redis_port, username="default",
                          password="", socket_timeout=5)
    marker = f"lineage:{roles['admin'].topics.prefix}:secure-probe"
    for client in (plain, guessed):
        for call in (lambda c: c.get(marker), lambda c: c.set(marker, b"x"), lambda c: c.keys("*"),
                     lambda c: c.config_get("requirepass")):
            with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
                call(client)
    # the emitter has no Redis user at all; its Kafka password does not open Redis either
    as_emitter = redis.Redis(host="127.0.0.1", port=secure_stack.stack_settings.redis_port, username="emitter",
                             password=secure_stack.secrets.kafka["emitter"], socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        as_emitter.get(marker)
    owner = redis.Redis.from_url(roles["admin"].redis_url)
    assert owner.exists(marker) == 0
    # a pipeline user reaches only the pipeline's key space, and no dangerous command
    worker = redis.Redis.from_url(roles["worker"].redis_url)
    worker.set(marker, b"ok")
    assert owner.get(marker) == b"ok"
    for call in (lambda c: c.get("other-app:secret"), lambda c: c.keys("*"), lambda c: c.flushall(),
                 lambda c: c.config_get("*")):
        with pytest.raises(redis.ResponseError, match="NOPERM|no permissions"):
            call(worker)
    owner.delete(marker)


# -- least privilege per role --------------------------------------------------------------

def test_emitter_writes_inputs_only_and_reads_nothing(roles):
    emitter = _conf(roles["emitter"])
    for topic in [*input_topics(roles["admin"]), roles["admin"].topics.metrics]:
        assert _produce(emitter, topic) is None, topic
    for topic in output_topics(roles["admin"]):
        if topic == roles["admin"].topics.metrics:
            continue
        err = _produce(emitter, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, err)
    for topic in input_topics(roles["admin"]):
        got, errors = _consume(emitter, topic)
        assert got == [] and any("TOPIC_AUTHORIZATION_FAILED" in e for e in errors), (topic, errors)


def test_sink_cannot_read_inputs_and_worker_cannot_write_them(roles):
    topic = roles["admin"].topics.training
    assert _produce(_conf(roles["emitter"]), topic) is None
    got, errors = _consume(_conf(roles["sink"]), topic)
    assert got == [] and any("TOPIC_AUTHORIZATION_FAILED" in e for e in errors), errors
    err = _produce(_conf(roles["worker"]), topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# -- the pipeline still runs --------------------------------------------------------------

PER_KIND = 10
KINDS = ("dataset", "feature", "training", "inference")


def _count_rows(admin: Settings) -> dict[str, tuple[int, int]] | None:
    req = urllib.request.Request(
        f"{admin.api_url}/api/sql",
        data=json.dumps({"sql": "SELECT kind, count(), uniqExact(event_id) FROM raw_events GROUP BY kind"}).encode(),
        headers={"Content-Type": "application/json", **auth_headers(admin)})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            rows = json.loads(resp.read())["rows"]
    except OSError:
        return None  # the sink is not serving yet
    counts = {str(k): (int(n), int(u)) for k, n, u in rows}
    return counts if sum(u for _, u in counts.values()) >= PER_KIND * len(KINDS) else None


def test_pipeline_runs_end_to_end_with_each_role_s_credentials(secure_stack, roles):
    from producers import Emitter, EmitterConfig

    admin, worker, sink = roles["admin"], roles["worker"], roles["sink"]
    data_dir = Path(admin.data_dir)
    ids: list[str] = []
    with Emitter(EmitterConfig.from_settings(roles["emitter"]), "secure-e2e") as emitter:
        for kind in KINDS:
            ids += [emitter.emit(sdk_event(kind)) for _ in range(PER_KIND)]
        emitter.flush(60.0)
        stats = emitter.metrics()
    assert stats["delivered"] == len(ids) and stats["failed"] == 0, stats

    procs = [ManagedProcess.in_data_dir(data_dir, "worker-0", [LINEAGE, "worker", "--log-level", "info"],
                                        env=env_for(worker)),
             ManagedProcess.in_data_dir(data_dir, "sink", [LINEAGE, "sink"], env=env_for(sink))]
    try:
        for proc in procs:
            proc.start()
        counts = wait_until(lambda: _count_rows(admin), 180,
                            "every emitted event in ClickHouse (see worker-0.log / sink.log)", interval=1.0)
        # the worker's Faust app (the windows) authenticated too: its group commits the whole window
        # feed, which the event path (the worker's own producer) wrote with every batch
        feed, parts = window_counts_topic(admin), admin.topics.partitions
        ends = {p: end for p, end in end_offsets(admin, feed, parts).items() if end > 0}  # keyed: some stay empty
        assert ends
        # (the Faust app joins its group after the event path started: slow on a loaded machine)
        try:
            wait_until(lambda: {p: o for p, o in committed(admin, admin.app_id, feed, parts).items() if p in ends} == ends, 240,
                       "the Faust app's group to commit the whole window feed")
        except Timeout:
            log = (data_dir / "logs" / "worker-0.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"the Faust app did not commit the window feed in 240 s; worker log tail:\n{log}") from None
        with urllib.request.urlopen(f"{admin.api_url}/health", timeout=10) as resp:
            health = resp.read().decode()
    finally:
        for proc in procs:
            proc.stop(timeout=30)
    assert counts == {kind: (PER_KIND, PER_KIND) for kind in KINDS}
    logs = "\n".join(p.read_text(errors="replace") for p in sorted((data_dir / "logs").glob("*.log")))
    refusals = ("AUTHORIZATION_FAILED", "AuthorizationFailed", "NOPERM", "AuthenticationError", "SaslAuthentication")
    assert not [r for r in refusals if r in logs], logs[-3000:]
    passwords = [*secure_stack.secrets.kafka.values(), *secure_stack.secrets.redis.values()]
    assert not [p for p in passwords if p in logs or p in health]


# -- secrets hygiene ----------------------------------------------------------------------

def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINEAGE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_stack_status_and_cli_errors_never_show_a_password(secure_stack, tmp_path):
    passwords = [*secure_stack.secrets.kafka.values(), *secure_stack.secrets.redis.values()]
    env = env_for(secure_stack.settings(None))  # no credentials given: the data dir says it is secured
    status = _cli(env, "stack", "status", "--json", "--check")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["kafka"]["status"] == "up" and report["kafka"]["secure"] is True
    assert report["redis"]["status"] == "up" and report["secrets"]["env_files"]["worker"].endswith("worker.env")
    table = _cli(env, "stack", "status")
    assert not [p for p in passwords if p in status.stdout + status.stderr + table.stdout + table.stderr]
    for path in Path(report["secrets"]["dir"]).iterdir():
        assert path.stat().st_mode & 0o077 == 0, path

    # URLs given with passwords: reported redacted, and wrong ones fail with one line
    planted = f"PW{uuid.uuid4().hex}"
    port, nobody = secure_stack.stack_settings.redis_port, free_port()

    def with_urls(redis_port: int) -> dict[str, str]:
        return {**env, **settings_to_env(secure_stack.settings(
            None, data_dir=tmp_path, redis_url=f"redis://admin:{planted}@127.0.0.1:{redis_port}/0",
            clickhouse_url=f"http://reader:{planted}@127.0.0.1:{nobody}/?password={planted}"))}

    external, wrong = with_urls(nobody), with_urls(port)
    runs = [_cli(external, "stack", "status", "--json"), _cli(external, "stack", "status"),
            _cli(wrong, "stack", "status", "--json"), _cli(wrong, "keys", "list"), _cli(wrong, "keys", "list", "--json")]
    for res in runs:
        assert planted not in res.stdout + res.stderr, res
        assert "Traceback" not in res.stderr, res.stderr
    report = json.loads(runs[0].stdout)
    assert report["redis"] == {"status": "stopped", "url": f"redis://admin:***@127.0.0.1:{nobody}/0", "managed": False}
    assert report["clickhouse"]["status"] == "stopped"
    assert report["clickhouse"]["dsn"] == f"http://reader:***@127.0.0.1:{nobody}/?password=***"
    refused = runs[3]
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        "lineage: error: redis: invalid username-password pair or user is disabled."], refused.stderr


def test_worker_with_a_wrong_redis_password_logs_no_password(roles, tmp_path):
    planted = f"PW{uuid.uuid4().hex}"
    worker = roles["worker"]
    wrong = worker.model_copy(update={"data_dir": tmp_path,
                                      "redis_url": worker.redis_url.replace(
                                          worker.redis_url.split(":")[2].split("@")[0], planted)})
    assert planted in wrong.redis_url
    res = subprocess.run([LINEAGE, "worker"], env=env_for(wrong), capture_output=True, text=True, timeout=120)
    logs = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log")) \
        if (tmp_path / "logs").is_dir() else ""
    assert res.returncode != 0
    assert planted not in res.stdout + res.stderr + logs


def test_sink_with_an_unreachable_clickhouse_server_shows_no_password(roles, tmp_path):
    planted = f"PW{uuid.uuid4().hex}"
    sink = roles["sink"].model_copy(update={"data_dir": tmp_path, "api_port": free_port(),
                                            "clickhouse_url": f"http://reader:{planted}@127.0.0.1:{free_port()}/"})
    res = subprocess.run([LINEAGE, "sink"], env=env_for(sink), capture_output=True, text=True, timeout=180)
    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    assert res.returncode != 0
    assert "reader:***@" in res.stdout + res.stderr, res.stderr[-2000:]
    assert planted not in res.stdout + res.stderr + logs
