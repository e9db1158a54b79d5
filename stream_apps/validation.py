"""Semantic validation of decoded events. Pure functions: no I/O, an injected clock.

Every check raises :class:`~stream_apps.exceptions.Rejected` with one of :data:`REASONS`.
Decode reasons come from :class:`lineage.codec.Codec` unchanged. The run state machine
(which needs state across events) is :mod:`stream_apps.runstate`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from lineage.graph import to_micros
from stream_apps.exceptions import Rejected

#: reason code -> what it means (dead-letter header ``dlq.reason``).
REASONS: dict[str, str] = {
    "empty": "message has no bytes",
    "bad_magic": "neither Avro single-object nor Confluent framing",
    "truncated": "framing or Avro body cut short",
    "unknown_schema": "writer schema is not a shipped lineage schema",
    "undecodable": "bytes do not decode with the writer schema",
    "oversize": "message, snapshot or facet over the size limit",
    "wrong_topic": "event class does not match the topic it arrived on",
    "bad_json": "OpenLineage topic message is not a JSON object",
    "openlineage_invalid": "OpenLineage event could not be converted",
    "bad_id": "malformed event, run, parent run or prediction id",
    "missing_field": "a field or facet required for the event class is empty",
    "bad_facet": "a facet value is not a JSON object",
    "time_future": "event time too far in the future",
    "time_past": "event time too far in the past",
    "out_of_range": "a numeric field is outside its domain",
    "run_state": "illegal run state transition",
    "internal_error": "the pipeline failed on this message (bug); kept for replay",
}

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,256}$")
TERMINAL = frozenset({"COMPLETE", "FAIL", "ABORT"})


@dataclass(frozen=True)
class ValidationPolicy:
    """Limits; defaults suit production (the lead may promote these to ``Settings``)."""

    max_message_bytes: int = 1 << 20
    max_future_us: int = 5 * 60 * 1_000_000
    max_past_us: int = 400 * 24 * 3600 * 1_000_000
    max_snapshot_values: int = 2_000
    max_facet_bytes: int = 64 << 10


def check_size(raw: bytes, policy: ValidationPolicy) -> None:
    if len(raw) > policy.max_message_bytes:
        raise Rejected("oversize", f"message is {len(raw)} bytes, limit {policy.max_message_bytes}")


def _uuid(value: Any, what: str) -> None:
    if not isinstance(value, str) or not _UUID_RE.match(value.lower()):
        raise Rejected("bad_id", f"{what} must be a UUID, got {_show(value)}")


def _token(value: Any, what: str) -> None:
    if not isinstance(value, str) or not _TOKEN_RE.match(value):
        raise Rejected("bad_id", f"{what} must be 1-256 characters of [A-Za-z0-9._:@/+=-], got {_show(value)}")


def _required(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise Rejected("missing_field", f"{what} is required and empty")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _time(value: Any, now_us: int, policy: ValidationPolicy, what: str) -> None:
    micros = to_micros(value)
    if micros > now_us + policy.max_future_us:
        raise Rejected("time_future", f"{what} is {(micros - now_us) / 1e6:.0f}s ahead of the pipeline clock")
    if micros < now_us - policy.max_past_us:
        raise Rejected("time_past", f"{what} is {(now_us - micros) / 86_400e6:.0f} days old")


def _facets(facets: Mapping[str, str], where: str, policy: ValidationPolicy) -> None:
    for name, value in facets.items():
        if len(value) > policy.max_facet_bytes:
            raise Rejected("oversize", f"{where} facet {name!r} is {len(value)} bytes, limit {policy.max_facet_bytes}")
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise Rejected("bad_facet", f"{where} facet {name!r} is not JSON") from None
        if not isinstance(parsed, dict):
            raise Rejected("bad_facet", f"{where} facet {name!r} is not a JSON object")


def validate_run_event(kind: str, ev: Mapping[str, Any], now_us: int, policy: ValidationPolicy) -> None:
    """Dataset, feature and training events (OpenLineage RunEvent shape)."""
    _uuid(ev["event_id"], "event_id")
    _uuid(ev["run"]["runId"], "run.runId")
    if ev["run"].get("parentRunId") is not None:
        _uuid(ev["run"]["parentRunId"], "run.parentRunId")
    _required(ev["producer"], "producer")
    _required(ev["job"]["namespace"], "job.namespace")
    _required(ev["job"]["name"], "job.name")
    _time(ev["eventTime"], now_us, policy, "eventTime")
    _facets(ev["run"].get("facets") or {}, "run", policy)
    _facets(ev["job"].get("facets") or {}, "job", policy)
    for side in ("inputs", "outputs"):
        for i, ds in enumerate(ev.get(side) or ()):
            _required(ds["namespace"], f"{side}[{i}].namespace")
            _required(ds["name"], f"{side}[{i}].name")
            _facets(ds.get("facets") or {}, f"{side}[{i}]", policy)
    if kind == "feature":
        fs = ev["feature_set"]
        _required(fs["name"], "feature_set.name")
        _required(fs["version"], "feature_set.version")
    elif kind == "training":
        tr = ev["training"]
        _required(tr["model_name"], "training.model_name")
        _required(tr["model_version"], "training.model_version")
        _required(tr["code_version"], "training.code_version")
        for i, fs in enumerate(tr.get("feature_sets") or ()):
            _required(fs["name"], f"training.feature_sets[{i}].name")
            _required(fs["version"], f"training.feature_sets[{i}].version")
        if ev["eventType"] == "COMPLETE" and not tr.get("artifact_digest"):
            raise Rejected("missing_field", "training.artifact_digest is required on COMPLETE")


def validate_inference(
    ev: Mapping[str, Any],
    subject_id: Any,
    snapshot: Mapping[str, Any] | None,
    now_us: int,
    policy: ValidationPolicy,
) -> None:
    """Inference events; ``subject_id`` and ``snapshot`` were split off already (PII)."""
    _uuid(ev["event_id"], "event_id")
    _token(ev["prediction_id"], "prediction_id")
    for name in ("producer", "endpoint", "model_name", "model_version", "decision_type"):
        _required(ev[name], name)
    if not isinstance(subject_id, str) or not subject_id.strip():
        raise Rejected("missing_field", "subject_id is required and empty")
    score = ev["risk_score"]
    if not isinstance(score, (int, float)) or math.isnan(score) or not 0.0 <= score <= 1.0:
        raise Rejected("out_of_range", "risk_score must be a number in [0, 1]")
    _time(ev["event_time"], now_us, policy, "event_time")
    if snapshot is not None:
        values = snapshot.get("values") or {}
        if len(values) > policy.max_snapshot_values:
            raise Rejected("oversize", f"feature snapshot has {len(values)} values, limit {policy.max_snapshot_values}")
        fs = snapshot.get("feature_set")
        if fs is not None:
            _required(fs["name"], "feature_snapshot.feature_set.name")
            _required(fs["version"], "feature_snapshot.feature_set.version")


def validate_event(
    kind: str,
    ev: Mapping[str, Any],
    now_us: int,
    policy: ValidationPolicy,
    subject_id: Any = None,
    snapshot: Mapping[str, Any] | None = None,
) -> None:
    if kind == "inference":
        validate_inference(ev, subject_id, snapshot, now_us, policy)
    else:
        validate_run_event(kind, ev, now_us, policy)
