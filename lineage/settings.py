"""The one typed settings object. Every `LINEAGE_*` variable is read here and only here.

Nested groups use a double underscore: ``LINEAGE_SAMPLING__ROUTINE_RATE=0.02``.
librdkafka options pass through untouched as JSON: ``LINEAGE_KAFKA_CONFIG='{"security.protocol": "SASL_SSL"}'``.
An unknown ``LINEAGE_*`` variable is an error, never silently ignored.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lineage.exceptions import ConfigError

ENV_PREFIX = "LINEAGE_"
NESTED = "__"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StackSettings(_Group):
    """Where the local stack listens and what it runs."""

    kafka_version: str = "4.1.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_brokers: int = Field(default=1, ge=1, le=5)
    kafka_heap: str = "768m"
    redis_port: int = 16379
    # Apicurio Registry (Confluent-compatible API), started by `stack up` only when enabled.
    registry: bool = False
    registry_port: int = 18081


class TopicSettings(_Group):
    """Topic names, all below one prefix so a test (or a tenant) can own a private set."""

    prefix: str = "lineage"
    partitions: int = 6
    replication: int = 1
    openlineage: str = "openlineage.events"

    def name(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    @property
    def dataset(self) -> str:
        return self.name("dataset")

    @property
    def feature(self) -> str:
        return self.name("feature")

    @property
    def training(self) -> str:
        return self.name("training")

    @property
    def inference(self) -> str:
        return self.name("inference")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    @property
    def graph(self) -> str:
        return self.name("graph")

    @property
    def pii_hold(self) -> str:
        return self.name("pii.hold")

    @property
    def alerts(self) -> str:
        return self.name("alerts")

    @property
    def metrics(self) -> str:
        return self.name("metrics")

    @property
    def audit(self) -> str:
        """The query audit log's topic: one partition, so one hash chain in one total order."""
        return self.name("audit")

    @property
    def checkpoints(self) -> str:
        """Signed checkpoints of the hash chains' heads: one partition, kept for ever."""
        return self.name("checkpoints")

    @property
    def event_topics(self) -> dict[str, str]:
        """Input topic per event class."""
        return {k: self.name(k) for k in ("dataset", "feature", "training", "inference")}


class SamplingSettings(_Group):
    """Tiered inference sampling (see README, "Sampling")."""

    routine_rate: float = Field(default=0.02, ge=0.01, le=0.05)
    risk_threshold: float = 0.8
    consequential_decisions: tuple[str, ...] = ("deny", "decline", "reject", "flag", "escalate")
    regulated_classes: tuple[str, ...] = ("credit", "employment", "housing", "insurance", "health")
    hold_retention_ms: int = 7 * 24 * 3600 * 1000


class ProducerSettings(_Group):
    """Emitter SDK behaviour."""

    queue_size: int = 100_000
    spool_max_bytes: int = 1 << 30
    spool_fsync: str = Field(default="batch", pattern="^(always|batch|never)$")
    linger_ms: int = 20
    compression: str = "lz4"
    # Seconds between the emitter's reports of its queue/spool figures to the metrics topic
    # (what the spool panel and the spool-depth alert read); 0 turns the reports off.
    metrics_interval_s: float = Field(default=10.0, ge=0)


class AlertSettings(_Group):
    """Window sizes, deadlines, thresholds, de-duplication and delivery of alerts."""

    # Completeness windows (Faust, stream time of the graph topic).
    window_s: float = Field(default=60.0, gt=0)
    window_step_s: float | None = Field(default=None, gt=0)  # hopping when set, else tumbling
    window_grace_s: float = Field(default=2.0, ge=0)
    window_retention_s: float = Field(default=3600.0, gt=0)
    eval_interval_s: float = Field(default=1.0, gt=0)
    eval_horizon_s: float | None = Field(default=None, gt=0)  # closed windows re-evaluated this long
    # A closed window is first evaluated once every partition that can hold its events is past its
    # end + window_grace_s (per-partition watermarks), or this long after that if one is not.
    watermark_max_wait_s: float = Field(default=30.0, ge=0)
    run_deadline_s: float = Field(default=3600.0, gt=0)
    # A streaming run (jobType.processingType = STREAMING) is never awaited to end; it is stalled
    # when no START or RUNNING of it arrived for this long.
    streaming_stall_s: float = Field(default=900.0, gt=0)
    lineage_share_min: float = Field(default=0.95, ge=0, le=1)
    min_window_events: int = Field(default=1, ge=1)
    expected_emitters: tuple[str, ...] = ()
    heartbeat_window_s: float = Field(default=300.0, gt=0)
    # Queue depth (monitor process).
    sample_interval_s: float = Field(default=5.0, gt=0)
    lag_threshold: int = Field(default=10_000, ge=0)
    lag_window_s: float = Field(default=60.0, ge=0)
    lag_groups: tuple[str, ...] = ()  # empty: every group committing to the pipeline's topics
    spool_threshold: int = Field(default=10_000, ge=0)
    dlq_rate_threshold: float = Field(default=1.0, ge=0)  # dead letters per second, over lag_window_s
    # Lifecycle and delivery.
    resolve_after_s: float | None = Field(default=None, gt=0)  # default: 2 x window_s
    cooldown_s: float = Field(default=300.0, ge=0)
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_retries: int = Field(default=3, ge=0)
    history_limit: int = Field(default=1000, ge=10)
    metrics_retention_points: int = Field(default=720, ge=10)

    @property
    def stale_after_s(self) -> float:
        """A window alert nobody re-asserted for this long is resolved."""
        return self.resolve_after_s if self.resolve_after_s is not None else 2 * self.window_s

    @property
    def watermark_wait_s(self) -> float:
        """The bounded wait, capped so that a held window is still evaluated inside the horizon."""
        return max(0.0, min(self.watermark_max_wait_s, self.horizon_s - self.window_grace_s - 2 * self.eval_interval_s))

    @property
    def horizon_s(self) -> float:
        """How long after closing a window is still evaluated: must outlast a worker restart."""
        return self.eval_horizon_s if self.eval_horizon_s is not None else max(2 * self.window_s, 60.0)


class SqlSettings(_Group):
    """Resource limits on every analyst statement (``POST /api/sql``, ``lineage sql``)."""

    max_execution_time_s: int = Field(default=60, ge=1)
    max_result_rows: int = Field(default=1_000_000, ge=1)
    max_result_bytes: int = Field(default=1 << 30, ge=1)
    max_memory_usage: int = Field(default=4 << 30, ge=1 << 20)
    #: Statements the API runs at once, each on its own connection (never the sink's insert path).
    concurrency: int = Field(default=4, ge=1, le=64)


class ApiSettings(_Group):
    """Access to the sink's HTTP API (keys and roles are managed with `lineage keys`)."""

    #: Serve ``/metrics`` without a key (for a Prometheus that cannot send a bearer token).
    metrics_public: bool = False
    #: Lifetime of a browser session made by signing in with a key.
    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    #: Host names a browser may reach the API by (DNS-rebinding guard); empty: the API's own
    #: host, ``localhost`` and ``127.0.0.1``. Scripts with a key are not limited.
    allowed_hosts: tuple[str, ...] = ()
    #: Roles that must give a reason (``X-Lineage-Reason`` / ``--reason``) for every query.
    reason_required: tuple[str, ...] = ("auditor", "investigator")


class ExplorerSettings(_Group):
    """The lineage explorer (``/explore``): how much of a neighbourhood the page draws node by node."""

    #: Past this many nodes a neighbourhood is shown grouped by node type and namespace, with counts.
    node_cap: int = Field(default=2500, ge=10, le=20_000)
    #: The deepest neighbourhood (hops each way) a request may ask for.
    max_depth: int = Field(default=12, ge=1, le=50)
    #: Rows a type-ahead search answers with.
    search_limit: int = Field(default=20, ge=1, le=200)


class AuditSettings(_Group):
    """The query audit log: every decrypt, erase, flag, key operation and query, who, why, outcome."""

    # Rows of `query_audit` older than this are pruned by the sink (about 7 years by default).
    retention_days: int = Field(default=2557, ge=1)
    # Retention of the audit topic: how long a stopped sink may stay down without losing a record.
    topic_retention_days: int = Field(default=30, ge=1)
    # How long an audited operation waits for Kafka to acknowledge its record before refusing.
    ack_timeout_s: float = Field(default=30.0, gt=0)


class PiiSettings(_Group):
    """How PII enters and leaves: sealing at the source, dead-letter keys."""

    #: Accept inference events whose subject id and snapshot arrive in the clear (not sealed at
    #: the source). Off by default: such events are dead-lettered (``unsealed_pii``, sealed).
    #: Turn on only while migrating emitters; each one is counted (``unsealed.inference``).
    accept_unsealed: bool = False
    #: Dead letters whose subject is unknown are sealed with a dead-letter key renewed this often.
    deadletter_key_days: int = Field(default=1, ge=1)
    #: Dead-letter keys older than this are destroyed, and their dead letters with them.
    deadletter_key_retention_days: int = Field(default=30, ge=1)


class CheckpointSettings(_Group):
    """Signed checkpoints of the hash chains (see README, "Tamper evidence")."""

    #: At most one checkpoint per this many seconds while batches move the chains (always one
    #: at a clean shutdown); 0: one after every batch.
    interval_s: float = Field(default=10.0, ge=0)
    #: The sink's Ed25519 signing key (PEM, mode 0600); default ``<data_dir>/keys/checkpoint-signing.key``.
    signing_key_file: Path | None = None
    #: The public key ``lineage verify`` trusts, base64 of its 32 raw bytes; when unset, read from
    #: ``public_key_file`` (default ``<data_dir>/keys/checkpoint-signing.pub``, written with the key).
    public_key: str | None = None
    public_key_file: Path | None = None
    #: Row hashes pinned per checkpoint (every row while fewer moved since the last one): how
    #: precisely verify can name a rewritten row.
    max_pins: int = Field(default=16_000, ge=1, le=30_000)
    #: How long publishing one waits for Kafka's acknowledgement.
    publish_timeout_s: float = Field(default=10.0, gt=0)


class ValidationSettings(_Group):
    """What the pipeline (and the SDK at ``emit()``, the HTTP intake at ``POST``) accepts.

    One rule set, :mod:`lineage.rules`; these are its limits.
    """

    #: Refuse events dated more than this many days before the pipeline's clock; unset (the
    #: default): any age is accepted (backfills, imported history).
    max_past_days: int | None = Field(default=None, ge=1)
    #: Refuse events dated more than this many seconds after the pipeline's clock (clock skew).
    max_future_s: int = Field(default=300, ge=0)
    #: A message (encoded event) over this many bytes is refused whole.
    max_message_bytes: int = Field(default=1 << 20, ge=1024)
    #: A facet whose JSON is over this many bytes is dropped from the stored record with a note
    #: (name, size, SHA-256); the event's lineage is kept.
    max_facet_bytes: int = Field(default=64 << 10, ge=64)
    #: An inference feature snapshot with more values than this is refused.
    max_snapshot_values: int = Field(default=2_000, ge=1)


class WorkerSettings(_Group):
    """The worker's event path: how consumed batches are processed."""

    #: Batches consumed and handed to processing but not yet committed; 1 consumes the next batch
    #: only after the previous one is committed.
    max_in_flight: int = Field(default=2, ge=1, le=16)
    #: At most this many records per consumed batch (fewer when fewer arrive within 0.2 s).
    batch_max: int = Field(default=5_000, ge=1, le=100_000)
    #: ``process``: a spawned processing child (batches cross a pipe); ``thread``: a thread of the
    #: worker process (no pickling; pays off when the per-event work releases the interpreter lock).
    processing: str = Field(default="process", pattern="^(process|thread)$")


class Settings(BaseSettings):
    """All configuration. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path(".lineage")
    kafka_bootstrap: str = "127.0.0.1:19092"
    # May hold passwords (sasl.password, user:password@): left out of repr(), never printed.
    kafka_config: dict[str, str] = Field(default_factory=dict, repr=False)
    schema_registry_url: str | None = None
    redis_url: str = Field(default="redis://127.0.0.1:16379/0", repr=False)
    clickhouse_url: str | None = Field(default=None, repr=False)
    clickhouse_database: str = "lineage"
    app_id: str = "lineage-pipeline"
    api_host: str = "127.0.0.1"
    api_port: int = 8088
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    kek: SecretStr | None = None
    kek_file: Path | None = None
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None
    #: The pipeline's public key emitters seal PII for (``x25519:<base64>``); by default read
    #: from ``<data_dir>/keys/seal.pub`` (created with the first seal key).
    seal_public_key: str | None = None
    log_level: str = "INFO"

    stack: StackSettings = StackSettings()
    topics: TopicSettings = TopicSettings()
    sampling: SamplingSettings = SamplingSettings()
    producer: ProducerSettings = ProducerSettings()
    alerts: AlertSettings = AlertSettings()
    sql: SqlSettings = SqlSettings()
    api: ApiSettings = ApiSettings()
    explorer: ExplorerSettings = ExplorerSettings()
    audit: AuditSettings = AuditSettings()
    pii: PiiSettings = PiiSettings()
    checkpoints: CheckpointSettings = CheckpointSettings()
    validation: ValidationSettings = ValidationSettings()
    worker: WorkerSettings = WorkerSettings()

    @model_validator(mode="before")
    @classmethod
    def _stack_addresses(cls, data: Any) -> Any:
        """Unset Kafka and Redis addresses follow the local stack's ports when those are set, so
        ``LINEAGE_STACK__KAFKA_PORT=36092`` alone starts and uses a stack on 36092 rather than
        finding another one on the default port."""
        if not isinstance(data, dict) or data.get("stack") is None:
            return data
        stack = data["stack"]

        def given(name: str) -> Any:
            return stack.get(name) if isinstance(stack, dict) else getattr(stack, name, None)

        kafka_port, redis_port = given("kafka_port"), given("redis_port")
        if kafka_port is not None and "kafka_bootstrap" not in data:
            data = {**data, "kafka_bootstrap": f"127.0.0.1:{int(kafka_port)}"}
        if redis_port is not None and "redis_url" not in data:
            data = {**data, "redis_url": f"redis://127.0.0.1:{int(redis_port)}/0"}
        return data

    @field_validator("clickhouse_url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return v

    @property
    def clickhouse_dsn(self) -> str:
        """`chdb://<data_dir>/clickhouse` unless a server URL is configured."""
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")

    @property
    def kek_path(self) -> Path:
        return self.kek_file or (self.data_dir / "keys" / "kek.key")

    @property
    def keys_dir(self) -> Path:
        """Where the pipeline's own key files live (KEK, seal keys, ...)."""
        return self.data_dir / "keys"

    @property
    def pseudonym_key_path(self) -> Path:
        """The key subject references are made with (see :mod:`lineage.pii.kek`)."""
        return self.pseudonym_key_file or (self.data_dir / "keys" / "pseudonym.key")

    @property
    def checkpoint_key_path(self) -> Path:
        """The sink's checkpoint signing key (never inside the ClickHouse store)."""
        return self.checkpoints.signing_key_file or (self.data_dir / "keys" / "checkpoint-signing.key")

    @property
    def checkpoint_public_key_path(self) -> Path:
        return self.checkpoints.public_key_file or (self.data_dir / "keys" / "checkpoint-signing.pub")

    @property
    def events_group(self) -> str:
        """Consumer group of the workers' event path (the Faust app's own group is ``app_id``)."""
        return f"{self.app_id}.events"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def credentials_path(self) -> Path:
        """Where the CLI keeps its API key (mode 0600) unless ``LINEAGE_API_KEY`` is set."""
        return self.api_key_file or (self.data_dir / "credentials")

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka options shared by producers, consumers and admin clients."""
        return {"bootstrap.servers": self.kafka_bootstrap, **self.kafka_config}


def _known_env_keys() -> set[str]:
    keys: set[str] = set()
    for name, field in Settings.model_fields.items():
        keys.add(name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.update(f"{name}{NESTED}{sub}" for sub in ann.model_fields)
    return keys


def check_env(environ: Mapping[str, str]) -> None:
    """Reject `LINEAGE_*` variables that name no setting (typos must not be silently ignored)."""
    known = _known_env_keys()
    unknown = sorted(
        k for k in environ if k.upper().startswith(ENV_PREFIX) and k[len(ENV_PREFIX):].lower() not in known
    )
    # Variables the test-suite reads, not settings.
    unknown = [k for k in unknown if not k.upper().startswith(ENV_PREFIX + "TEST_")]
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (checked for unknown keys) plus explicit overrides."""
    check_env(os.environ)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None


#: Settings naming a key-holder secret (or where one is): given only to processes that wrap or
#: unwrap data keys (stream workers, ``lineage keyholder``, the administrator's CLI), never to
#: the sink or anything serving SQL. A new secret of that kind is added here, once.
KEY_HOLDER_SECRETS: tuple[str, ...] = ("kek", "kek_file", "pseudonym_key", "pseudonym_key_file")


def key_holder_env_names() -> frozenset[str]:
    """The environment variables of :data:`KEY_HOLDER_SECRETS` (``LINEAGE_KEK``, ...)."""
    return frozenset(f"{ENV_PREFIX}{name.upper()}" for name in KEY_HOLDER_SECRETS)


def without_key_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` minus every key-holder secret (case-insensitive, as settings are read)."""
    names = key_holder_env_names()
    return {k: v for k, v in environ.items() if k.upper() not in names}


def settings_to_env(settings: Settings, key_holder: bool = False) -> dict[str, str]:
    """The `LINEAGE_*` variables that reproduce `settings` in a child process.

    Key-holder secrets (:data:`KEY_HOLDER_SECRETS`) are included only with ``key_holder=True``:
    by default a child gets nothing it could unwrap a data key or name a subject with.
    """
    env: dict[str, str] = {}
    data = settings.model_dump(mode="json")
    for name, value in data.items():
        if value is None or (name in KEY_HOLDER_SECRETS and not key_holder):
            continue
        if isinstance(value, dict) and name != "kafka_config":
            for sub, subval in value.items():
                if subval is not None:
                    env[f"{ENV_PREFIX}{name.upper()}{NESTED}{sub.upper()}"] = _env_value(subval)
        elif name in KEY_HOLDER_SECRETS and isinstance(getattr(settings, name), SecretStr):
            env[f"{ENV_PREFIX}{name.upper()}"] = getattr(settings, name).get_secret_value()
        else:
            env[f"{ENV_PREFIX}{name.upper()}"] = _env_value(value)
    return env


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
