"""Typed builders for the four event classes, mirroring ``avro/*.avsc`` field for field.

Field names are the Avro names (OpenLineage's camelCase included) so an instance serialises
straight to its record; ``tests/unit/test_producer_events.py`` proves the field sets match the
latest shipped schemas. Conveniences the SDK normalises before encoding: times may be a
``datetime`` or integer microseconds; facet values, feature-snapshot values and
hyperparameters may be any JSON value (they are JSON-encoded into the schema's strings).
``event_id`` and ``correlation_id`` are stamped by ``Emitter.emit`` when left ``None``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

EventType = Literal["START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"]
OPENLINEAGE_SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def now_micros() -> int:
    """Current UTC time in microseconds since the epoch (the schemas' timestamp-micros)."""
    return time.time_ns() // 1000


# --- nested records ---------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """An OpenLineage run; ``runId`` is stable across the run's events (and keys its partition)."""

    runId: str  # noqa: N815 (Avro / OpenLineage name)
    parentRunId: str | None = None  # noqa: N815
    facets: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Job:
    namespace: str
    name: str
    facets: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Dataset:
    """namespace: data source URI (``postgres://host:5432``); name: path in it (``db.schema.table``)."""

    namespace: str
    name: str
    version: str | None = None
    facets: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FeatureSet:
    name: str
    version: str
    features: list[str] = field(default_factory=list)
    entity: str | None = None


@dataclass(slots=True)
class FeatureSetRef:
    name: str
    version: str


@dataclass(slots=True)
class Training:
    model_name: str
    model_version: str
    code_version: str
    artifact_digest: str | None = None
    feature_sets: list[FeatureSetRef] = field(default_factory=list)
    dataset_digests: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class FeatureSnapshot:
    """Feature values the model saw (PII: encrypted downstream, never stored in clear)."""

    values: dict[str, Any]
    feature_set: FeatureSetRef | None = None


# --- events -----------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _RunTransition:
    """The OpenLineage RunEvent fields the dataset, feature and training events share."""

    eventType: EventType  # noqa: N815
    run: Run
    job: Job
    producer: str
    eventTime: int | datetime = field(default_factory=now_micros)  # noqa: N815
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)
    schemaURL: str = OPENLINEAGE_SCHEMA_URL  # noqa: N815
    event_id: str | None = None
    correlation_id: str | None = None


@dataclass(slots=True, kw_only=True)
class DatasetEvent(_RunTransition):
    """An ETL run transition: which datasets a job read and wrote."""

    KIND: ClassVar[str] = "dataset"


@dataclass(slots=True, kw_only=True)
class FeatureEvent(_RunTransition):
    """A feature-engineering run transition producing a versioned feature set."""

    KIND: ClassVar[str] = "feature"
    feature_set: FeatureSet


@dataclass(slots=True, kw_only=True)
class TrainingEvent(_RunTransition):
    """A training run transition: feature sets and datasets in, a model version out."""

    KIND: ClassVar[str] = "training"
    training: Training


@dataclass(slots=True, kw_only=True)
class InferenceEvent:
    """One prediction by a deployed model version (keyed by model version for ordering)."""

    KIND: ClassVar[str] = "inference"
    producer: str
    endpoint: str
    model_name: str
    model_version: str
    prediction_id: str
    decision_type: str
    risk_score: float
    subject_id: str
    regulatory_class: str | None = None
    training_run_id: str | None = None
    feature_snapshot: FeatureSnapshot | None = None
    event_time: int | datetime = field(default_factory=now_micros)
    event_id: str | None = None
    correlation_id: str | None = None
    #: Set by ``emit()``: ``subject_id`` and ``feature_snapshot`` sealed for the pipeline (they are
    #: then emptied in what is written; the caller's object is not changed).
    sealed: str | None = None


Event = DatasetEvent | FeatureEvent | TrainingEvent | InferenceEvent

#: kind -> typed class.
EVENT_CLASSES: dict[str, type[DatasetEvent] | type[FeatureEvent] | type[TrainingEvent] | type[InferenceEvent]] = {
    c.KIND: c for c in (DatasetEvent, FeatureEvent, TrainingEvent, InferenceEvent)
}

#: Avro record name -> typed class, for nested records (used by the schema-match test).
RECORD_CLASSES: dict[str, type] = {
    "DatasetEvent": DatasetEvent,
    "FeatureEvent": FeatureEvent,
    "TrainingEvent": TrainingEvent,
    "InferenceEvent": InferenceEvent,
    "Run": Run,
    "Job": Job,
    "Dataset": Dataset,
    "FeatureSet": FeatureSet,
    "FeatureSetRef": FeatureSetRef,
    "Training": Training,
    "FeatureSnapshot": FeatureSnapshot,
}
