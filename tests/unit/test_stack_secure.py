"""The secured stack's pure parts: credentials on disk, broker properties, the ACL matrix, the Faust
credentials, and redaction of secrets in what is shown (no JVM, no sockets)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import faust
import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from lineage.exceptions import ConfigError, StackError
from lineage.redact import redact_config, redact_text, redact_url
from lineage.settings import Settings, StackSettings, TopicSettings
from shell.stack.acl import deployment_grants, input_topics, output_topics
from shell.stack.kafka_config import node_layout, scram_format_argument, server_properties
from shell.stack.secrets import ROLES, StackSecrets
from stream_apps.app import broker_credentials

STACK = StackSettings(kafka_port=39092, kafka_controller_port=39093, redis_port=39379)


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:39092", redis_url="redis://127.0.0.1:39379/0",
                    stack=STACK, app_id="app1", topics=TopicSettings(prefix="p1", openlineage="p1.ol"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- credentials ------------------------------------------------------------------------

def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    made = StackSecrets.create(tmp_path)
    assert set(made.kafka) == set(ROLES) and set(made.redis) == {"admin", "worker", "sink"}
    assert len(set(made.kafka.values()) | set(made.redis.values())) == len(made.kafka) + len(made.redis)
    assert _mode(made.state_file) == 0o600 and _mode(made.directory) == 0o700
    again = StackSecrets.create(tmp_path)
    assert again.kafka == made.kafka and again.redis == made.redis
    assert StackSecrets.load(tmp_path / "elsewhere") is None
    assert made.kafka["admin"] not in repr(made)


def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    made = StackSecrets.create(tmp_path)
    os.chmod(made.state_file, 0o644)
    with pytest.raises(StackError, match="chmod 600"):
        StackSecrets.load(tmp_path)


def test_role_settings_and_env_files_carry_the_role_s_credentials(tmp_path: Path) -> None:
    made = StackSecrets.create(tmp_path)
    base = _settings(tmp_path)
    worker = made.settings_for(base, "worker")
    assert worker.kafka_config == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                                   "sasl.username": "worker", "sasl.password": made.kafka["worker"]}
    assert worker.redis_url == f"redis://worker:{made.redis['worker']}@127.0.0.1:39379/0"
    emitter = made.settings_for(base, "emitter")
    assert emitter.redis_url == base.redis_url  # no Redis user for emitters
    with pytest.raises(StackError, match="unknown role"):
        made.settings_for(base, "root")
    files = made.write_env_files(base)
    assert set(files) == set(ROLES)
    for role, path in files.items():
        assert _mode(path) == 0o600
        lines = dict(line.split("=", 1) for line in path.read_text().splitlines() if not line.startswith("#"))
        config = json.loads(lines["LINEAGE_KAFKA_CONFIG"].strip("'"))
        assert config["sasl.username"] == role and config["sasl.password"] == made.kafka[role]
        assert ("LINEAGE_REDIS_URL" in lines) == (role != "emitter")
    # every secret the settings carry is left out of repr() (a logged or raised Settings shows none)
    assert made.kafka["worker"] not in repr(worker) and made.redis["worker"] not in repr(worker)


def test_redis_acl_turns_the_default_user_off_and_holds_no_password(tmp_path: Path) -> None:
    made = StackSecrets.create(tmp_path)
    text = made.redis_acl()
    lines = text.splitlines()
    assert lines[0].startswith("user default off")
    assert not [p for p in made.redis.values() if p in text]
    worker = next(line for line in lines if line.startswith("user worker "))
    assert "~lineage:*" in worker and "-@dangerous" in worker and "~*" not in worker.split()
    path = made.write_redis_acl()
    assert _mode(path) == 0o600


# -- broker -----------------------------------------------------------------------------

def test_secured_broker_properties(tmp_path: Path) -> None:
    nodes = node_layout(STACK, 1, tmp_path)
    plain = server_properties(nodes[0], nodes)
    assert "authorizer.class.name" not in plain and plain["listeners"].startswith("PLAINTEXT://")
    props = server_properties(nodes[0], nodes, admin_password="s3cret")
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:39092"
    assert props["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:admin" and props["allow.everyone.if.no.acl.found"] == "false"
    assert 'password="s3cret"' in props["listener.name.controller.plain.sasl.jaas.config"]
    assert not [k for k, v in props.items() if "PLAINTEXT://" in v and "SASL_" not in v]
    assert scram_format_argument("s3cret") == "SCRAM-SHA-512=[name=admin,password=s3cret]"


# -- who may do what --------------------------------------------------------------------

def _granted(settings: Settings, role: str) -> dict[tuple[ResourceType, str], set[AclOperation]]:
    out: dict[tuple[ResourceType, str], set[AclOperation]] = {}
    for who, rtype, name, pattern, op in deployment_grants(settings):
        if who == role:
            out.setdefault((rtype, name + ("*" if pattern == ResourcePatternType.PREFIXED else "")), set()).add(op)
    return out


def test_emitter_may_only_write_the_inputs_and_metrics(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    got = _granted(s, "emitter")
    want = {(ResourceType.TOPIC, n) for n in [*input_topics(s), s.topics.metrics]}
    assert set(got) == want and all(ops == {AclOperation.WRITE} for ops in got.values())
    assert input_topics(s) == ["p1.dataset", "p1.feature", "p1.training", "p1.inference", "p1.ol"]


def test_worker_reads_inputs_writes_outputs_and_owns_its_groups(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    got = _granted(s, "worker")
    T, G = ResourceType.TOPIC, ResourceType.GROUP
    for name in input_topics(s):
        assert got[(T, name)] == {AclOperation.READ, AclOperation.DESCRIBE}, name
    for name in output_topics(s):
        assert AclOperation.WRITE in got[(T, name)] and AclOperation.ALL not in got[(T, name)], name
    assert got[(T, "app1-*")] == {AclOperation.ALL}  # Faust's changelogs and leader topic
    assert got[(G, "app1")] == got[(G, "app1.events")] == {AclOperation.READ}
    assert not [k for k in got if k[0] == ResourceType.TOPIC and k[1] == "*"]


def test_sink_reads_outputs_never_inputs(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    got = _granted(s, "sink")
    T, G = ResourceType.TOPIC, ResourceType.GROUP
    for name in output_topics(s):
        assert AclOperation.READ in got[(T, name)], name
    for name in input_topics(s):
        assert AclOperation.READ not in got[(T, name)], name
    assert got[(G, "app1.clickhouse-sink")] == {AclOperation.READ}
    assert got[(G, "app1*")] == {AclOperation.DESCRIBE}


# -- Faust ------------------------------------------------------------------------------

def test_faust_gets_the_same_sasl_credentials() -> None:
    assert broker_credentials({}) is None
    creds = broker_credentials({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                                "sasl.username": "worker", "sasl.password": "pw"})
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value, creds.protocol.value) == (
        "worker", "pw", "SCRAM-SHA-512", "SASL_PLAINTEXT")
    assert "pw" not in repr(creds)
    tls = broker_credentials({"security.protocol": "sasl_ssl", "sasl.mechanism": "PLAIN",
                              "sasl.username": "u", "sasl.password": "p"})
    assert isinstance(tls, faust.SASLCredentials) and tls.protocol.value == "SASL_SSL" and tls.ssl_context is not None
    with pytest.raises(ConfigError, match="GSSAPI"):
        broker_credentials({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "GSSAPI"})


# -- redaction --------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    ("redis://worker:p%40ss@127.0.0.1:6379/0", "redis://worker:***@127.0.0.1:6379/0"),
    ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
    ("rediss://token@h:1", "rediss://***@h:1"),
    ("http://u:p@h:8123/?password=x&database=d", "http://u:***@h:8123/?password=***&database=d"),
    ("chdb:///var/lib/lineage/clickhouse", "chdb:///var/lib/lineage/clickhouse"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_and_config() -> None:
    text = "cannot reach redis://admin:hunter2@10.0.0.1:6379/0 (hunter2)"
    assert redact_text(text, ["hunter2"]) == "cannot reach redis://admin:***@10.0.0.1:6379/0 (***)"
    assert redact_text("at rediss://tok@h:1 and http://u:***@h/") == "at rediss://***@h:1 and http://u:***@h/"
    shown = redact_config({"sasl.password": "x", "sasl.username": "u", "ssl.key.password": "y", "acks": "all"})
    assert shown == {"sasl.password": "***", "sasl.username": "u", "ssl.key.password": "***", "acks": "all"}


# -- remembered: a data directory is secured until it is wiped ---------------------------

def test_a_secured_data_dir_stays_secured(tmp_path: Path) -> None:
    from shell.stack import Stack

    first = Stack(_settings(tmp_path), secure=True)  # nothing starts: only the layout and secrets
    assert first.secure and first.secrets is not None
    again = Stack(_settings(tmp_path))  # a later `stack status` / `down` / `demo` without --secure
    assert again.secure and again.secrets is not None and again.secrets.kafka == first.secrets.kafka
    assert again.role_settings("sink").kafka_config["sasl.username"] == "sink"
    assert again.kafka.client_config["sasl.username"] == "admin"
    assert again.redis.url.startswith("redis://admin:") and again.redis.address == "redis://127.0.0.1:39379/0"


def test_securing_a_cluster_formatted_without_it_needs_a_wipe(tmp_path: Path) -> None:
    from shell.stack import Stack

    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster.json").write_text(json.dumps({"cluster_id": "x", "brokers": 1, "version": "4.1.1"}))
    with pytest.raises(StackError, match="--wipe"):
        Stack(_settings(tmp_path), secure=True)
    assert not (tmp_path / "secrets").exists()
    assert not Stack(_settings(tmp_path)).secure


def test_only_the_sink_writes_the_signed_checkpoints(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    key = (ResourceType.TOPIC, s.topics.checkpoints)
    assert _granted(s, "sink")[key] == {AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE}
    assert _granted(s, "worker")[key] == {AclOperation.DESCRIBE}
    assert key not in _granted(s, "emitter")
