"""The Faust app factory: ``create_app(settings)`` builds a fresh app (no module-level app object)."""
from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust

from lineage.exceptions import ConfigError
from lineage.settings import Settings


def broker_urls(bootstrap: str) -> str:
    """``host1:9092,host2:9092`` -> Faust's ``kafka://host1:9092;kafka://host2:9092``."""
    return ";".join(f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip())


def broker_credentials(kafka_config: Mapping[str, str]) -> faust.types.auth.CredentialsT | None:
    """The Faust (aiokafka) side of the librdkafka security options in ``kafka_config``.

    ``security.protocol`` SASL_PLAINTEXT / SASL_SSL with ``sasl.mechanism(s)`` PLAIN or SCRAM-SHA-*,
    ``sasl.username``/``sasl.password``, and for TLS ``ssl.ca.location`` (plus a client certificate
    from ``ssl.certificate.location``/``ssl.key.location``), so the workers' Faust clients
    authenticate exactly as their librdkafka clients do. None for a plaintext cluster.
    """
    protocol = kafka_config.get("security.protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(kafka_config) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
        raise ConfigError(f"kafka_config security.protocol {protocol!r} is not supported by the Faust app")
    mechanism = kafka_config.get("sasl.mechanisms", kafka_config.get("sasl.mechanism", "PLAIN")).upper()
    if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise ConfigError(f"kafka_config sasl mechanism {mechanism!r} is not supported by the Faust app")
    return faust.SASLCredentials(username=kafka_config.get("sasl.username"), password=kafka_config.get("sasl.password"),
                                 ssl_context=context, mechanism=mechanism)


def _ssl_context(kafka_config: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=kafka_config.get("ssl.ca.location"))
    cert = kafka_config.get("ssl.certificate.location")
    if cert:
        context.load_cert_chain(cert, kafka_config.get("ssl.key.location"), kafka_config.get("ssl.key.password"))
    if kafka_config.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
        context.check_hostname = False
    return context


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    """The lineage pipeline app: the event path (model-lineage table + consumer loop) and the completeness windows."""
    datadir = (Path(settings.data_dir) / "faust" / settings.app_id).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        broker_credentials=broker_credentials(settings.kafka_config),
        store="memory://",  # recovers from the changelog topic on start
        datadir=str(datadir),
        autodiscover=False,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication,
        consumer_auto_offset_reset="earliest",
        # no web server: a worker serves nothing (its counters are in Redis, read through the
        # sink's authenticated API), so it opens no port that would need its own access control
        web_enabled=False,
        producer_acks=-1,
        stream_buffer_maxsize=16_384,
        broker_commit_every=5_000,
        broker_commit_interval=1.0,
        # A crashed worker's partitions move after 10 s instead of Faust's 60 s default, so
        # recovery (and window evaluation) resumes well inside the alert evaluation horizon.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_max_poll_records=5_000,
        **overrides,
    )
    from stream_apps import windows
    from stream_apps.event_path import service

    service.register(app, settings)
    windows.register(app, settings)
    return app


def create_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """A Faust worker for ``app`` logging at ``loglevel``, without the terminal spinner.

    Faust's spinner (installed when the level is warning or above) sets the root logger to DEBUG
    so that it spins on every record: every debug call in the process (the Kafka client per fetch,
    table recovery per changelog record) would then build a log record only for the handlers to
    drop it. Without it the root logger stays at ``loglevel``.
    """
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker
