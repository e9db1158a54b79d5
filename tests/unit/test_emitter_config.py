"""EmitterConfig: the SDK's own small config, built directly or from the pipeline's LINEAGE_* variables;
the emitter leaves SIGTERM alone unless asked; the `lineage` command names the missing extra."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from pydantic import ValidationError

import producers.emitter as emitter_mod
import shell.cli as cli
from lineage.exceptions import ConfigError
from lineage.schemas import SHIPPED_DIR
from lineage.settings import Settings, TopicSettings
from producers import Emitter, EmitterConfig, producer_config


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("LINEAGE_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults_agree_with_the_application_settings(clean_env: pytest.MonkeyPatch) -> None:
    assert EmitterConfig.from_settings(Settings(kafka_bootstrap="kafka:9092")) == EmitterConfig(
        bootstrap_servers="kafka:9092"
    )


def test_from_env_reads_the_pipeline_variables(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {
        "LINEAGE_KAFKA_BOOTSTRAP": "b1:9092,b2:9092",
        "LINEAGE_KAFKA_CONFIG": '{"security.protocol": "SASL_SSL"}',
        "LINEAGE_TOPICS__PREFIX": "tenant7",
        "LINEAGE_DATA_DIR": str(tmp_path),
        "LINEAGE_SCHEMA_REGISTRY_URL": "http://registry:8081",
        "LINEAGE_PRODUCER__QUEUE_SIZE": "500",
        "LINEAGE_PRODUCER__SPOOL_FSYNC": "always",
        "LINEAGE_PRODUCER__METRICS_INTERVAL_S": "0",
    }.items():
        clean_env.setenv(key, value)
    c = EmitterConfig.from_env()
    assert c.bootstrap_servers == "b1:9092,b2:9092"
    assert c.kafka_config == {"security.protocol": "SASL_SSL"}
    assert c.topic_prefix == "tenant7"
    assert c.event_topics == TopicSettings(prefix="tenant7").event_topics
    assert c.metrics_topic == "tenant7.metrics"
    assert c.spool_dir == tmp_path / "spool"
    assert c.schema_registry_url == "http://registry:8081"
    assert (c.queue_size, c.spool_fsync, c.metrics_interval_s) == (500, "always", 0)
    assert EmitterConfig.from_env(queue_size=7).queue_size == 7


def test_from_env_refuses_an_unknown_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LINEAGE_PRODUCER__QUEUESIZE", "5")
    with pytest.raises(ConfigError, match="LINEAGE_PRODUCER__QUEUESIZE"):
        EmitterConfig.from_env()


def test_unknown_fields_and_bad_values_are_errors() -> None:
    with pytest.raises(ValidationError):
        EmitterConfig(bootstrap_servers="h:1", queue_sise=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        EmitterConfig(bootstrap_servers="h:1", spool_fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        EmitterConfig(bootstrap_servers="h:1", metrics_interval_s=-1)


def test_librdkafka_options_pass_through_and_win() -> None:
    c = EmitterConfig(bootstrap_servers="h:1", kafka_config={"sasl.mechanism": "PLAIN", "linger.ms": 1})
    c2 = c.with_kafka_config({"message.timeout.ms": 5000})
    conf = producer_config(c2)
    assert conf["bootstrap.servers"] == "h:1" and conf["sasl.mechanism"] == "PLAIN"
    assert conf["linger.ms"] == 1 and conf["message.timeout.ms"] == 5000
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert "message.timeout.ms" not in c.kafka_config  # the original is unchanged


def _offline(tmp_path: Path, **changes: object) -> EmitterConfig:
    return EmitterConfig(bootstrap_servers="127.0.0.1:1", spool_dir=tmp_path, metrics_interval_s=0, **changes)


def test_emitter_uses_the_shipped_schemas_without_a_registry(tmp_path: Path) -> None:
    em = Emitter(_offline(tmp_path), "codec")
    try:
        assert em._codec.registry is None
        assert {s.path.parent for s in em._codec.repo} == {SHIPPED_DIR}
    finally:
        em.close(timeout=0)


def test_emitter_leaves_sigterm_alone_by_default(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    em = Emitter(_offline(tmp_path), "quiet")
    try:
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        em.close(timeout=0)


def test_emitter_closes_on_sigterm_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(emitter_mod, "_sigterm_installed", False)
    monkeypatch.setattr(emitter_mod, "_previous_sigterm", None)
    em = Emitter(_offline(tmp_path), "asked", handle_signals=True)
    try:
        assert signal.getsignal(signal.SIGTERM) is emitter_mod._on_sigterm
        assert emitter_mod._previous_sigterm is before  # chained after closing the emitters
    finally:
        signal.signal(signal.SIGTERM, before)
        em.close(timeout=0)


def test_cli_names_the_missing_pipeline_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    requires = [
        "orjson>=3.9",
        'typer>=0.12; extra == "pipeline"',
        'no-such-distribution-here>=1; extra == "pipeline"',
        'also-not-installed; extra == "dev"',
    ]
    assert cli.missing_requirements(requires) == ["no-such-distribution-here"]
    monkeypatch.setattr(cli.metadata, "requires", lambda dist: requires)
    assert cli.main(["version"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ai-lineage[pipeline]'" in err and "no-such-distribution-here" in err
