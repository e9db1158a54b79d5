"""The emitter's own configuration: what a service needs to publish lineage, and nothing else.

    Emitter(EmitterConfig(bootstrap_servers="kafka:9092"), name="fraud-api")
    Emitter(EmitterConfig.from_env(), name="fraud-api")  # the pipeline's LINEAGE_* variables

librdkafka options (SASL/SSL, timeouts, ...) pass through ``kafka_config`` under their own names.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lineage.pii.sealing import KeyRing
from lineage.settings import Settings, TopicSettings, ValidationSettings, load_settings


class EmitterConfig(BaseModel):
    """Where and how an :class:`~producers.emitter.Emitter` publishes. Unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str
    #: librdkafka options; they win over the emitter's defaults (and over ``bootstrap_servers``).
    kafka_config: dict[str, Any] = Field(default_factory=dict)
    #: Topics are ``<prefix>.<kind>`` (``lineage.inference``, ...) and ``<prefix>.metrics``.
    topic_prefix: str = "lineage"
    #: Confluent framing through this registry when set; otherwise single-object encoding
    #: resolved against the schemas shipped in the package.
    schema_registry_url: str | None = None
    #: Each emitter's spool is ``<spool_dir>/<name>``.
    spool_dir: Path = Path(".lineage/spool")
    spool_max_bytes: int = Field(default=1 << 30, gt=0)
    spool_fsync: Literal["always", "batch", "never"] = "batch"
    #: librdkafka's in-memory queue (``queue.buffering.max.messages``); beyond it events wait in the spool.
    queue_size: int = Field(default=100_000, gt=0)
    linger_ms: int = Field(default=20, ge=0)
    compression: str = "lz4"
    #: The pipeline's public key (``x25519:<base64>``, from ``lineage seal public-key``). Subject ids
    #: and feature snapshots of inference events are sealed for it in ``emit()``, before they touch
    #: the spool; without it, emitting an inference event is refused.
    seal_public_key: str | None = None
    #: Seconds between reports of the emitter's figures to the metrics topic; 0 turns them off.
    metrics_interval_s: float = Field(default=10.0, ge=0)
    #: The pipeline's validation limits: ``emit()`` refuses what the pipeline would refuse.
    validation: ValidationSettings = Field(default_factory=ValidationSettings)

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> EmitterConfig:
        """The emitter part of the application settings (``changes`` replace single fields)."""
        p = settings.producer
        fields: dict[str, Any] = {
            "bootstrap_servers": settings.kafka_bootstrap,
            "kafka_config": dict(settings.kafka_config),
            "topic_prefix": settings.topics.prefix,
            "schema_registry_url": settings.schema_registry_url,
            "spool_dir": Path(settings.data_dir) / "spool",
            "spool_max_bytes": p.spool_max_bytes,
            "spool_fsync": p.spool_fsync,
            "queue_size": p.queue_size,
            "linger_ms": p.linger_ms,
            "compression": p.compression,
            "metrics_interval_s": p.metrics_interval_s,
            "validation": settings.validation,
            "seal_public_key": settings.seal_public_key or KeyRing.under(settings.keys_dir).published(),
        }
        return cls(**{**fields, **changes})

    @classmethod
    def from_env(cls, **changes: Any) -> EmitterConfig:
        """From the same ``LINEAGE_*`` variables the pipeline reads (an unknown one is an error)."""
        return cls.from_settings(load_settings(), **changes)

    def with_kafka_config(self, options: Mapping[str, Any]) -> EmitterConfig:
        """A copy with ``options`` added to (and winning over) ``kafka_config``."""
        return self.model_copy(update={"kafka_config": {**self.kafka_config, **options}})

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka options every client of this emitter uses: brokers plus ``kafka_config``."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka_config}

    @property
    def event_topics(self) -> dict[str, str]:
        """Input topic per event class."""
        return TopicSettings(prefix=self.topic_prefix).event_topics

    @property
    def metrics_topic(self) -> str:
        return TopicSettings(prefix=self.topic_prefix).metrics
