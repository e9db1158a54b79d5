"""Shapes of the stream apps' table values and the inference lineage (documentation for readers)."""
from __future__ import annotations

from typing import TypedDict


class ModelLineage(TypedDict):
    """``model_lineage`` table value, keyed ``<model_name>@<model_version>``."""

    training_run_id: str
    feature_sets: list[str]  # "name@version"
    state: str  # eventType of the training event that last wrote the entry
    event_time: int  # microseconds


class InferenceLineage(TypedDict):
    """The ``inference`` dict of an inference graph record (see :mod:`lineage.graph`)."""

    prediction_id: str
    model_name: str
    model_version: str
    endpoint: str
    decision_type: str
    risk_score: float
    regulatory_class: str
    subject_ref: str
    training_run_id: str
    training_run_source: str  # event | table | ''
    feature_sets: list[str]
    tier: str  # consequential | flagged | sampled | routine
    tier_reason: str
    snapshot_pointer: str
    snapshot_sha256: str
    snapshot_status: str  # none | held | stored | subject_erased
    lineage_complete: bool
    unknown_model_version: bool
    correlation_source: str  # header | event | traceparent | derived
