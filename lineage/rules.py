"""The one rule set deciding what the pipeline stores: used by the worker, the HTTP intake and
the SDK's ``emit()`` alike, so an event the SDK accepts is one the pipeline stores, and an event
the pipeline would refuse is refused where it is made.

Pure functions over the Avro-shaped record (times as ``datetime`` or integer microseconds,
facet values as JSON text), an injected clock and :class:`Limits` (from ``Settings.validation``).

Three outcomes, never more than needed:

* **refused** (:class:`InvalidEvent`, with a reason code of :data:`REASONS`): what cannot be
  stored at all: a bad id, a missing essential field (one that names a node of the graph or is
  required by the OpenLineage spec), a time beyond the future skew (or, when configured, the
  past limit), an oversize message or snapshot, a risk score outside ``[0, 1]``;
* **incomplete** (:attr:`Findings.incomplete`): a recommended field is missing (a training
  COMPLETE without an artifact digest, a training run without a code version). The event is
  stored and flagged;
* **dropped facet** (:attr:`Findings.dropped`): a facet over the facet limit, or one that is
  not a JSON object, is removed from the stored record with a note (where, name, size,
  SHA-256); the event's inputs, outputs and run are kept.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from lineage.exceptions import LineageError
from lineage.graph import to_micros

if TYPE_CHECKING:
    from lineage.settings import ValidationSettings

#: reason code -> what it means, for every refusal this module makes.
REASONS: dict[str, str] = {
    "oversize": "message or feature snapshot over the size limit",
    "bad_id": "malformed event, run, parent run or prediction id",
    "missing_field": "a field required for the event class is empty",
    "time_future": "event time too far in the future",
    "time_past": "event time too far in the past (only when validation.max_past_days is set)",
    "out_of_range": "a numeric field is outside its domain",
}

#: Key of the stored record's findings: ``{"incomplete": [...], "dropped_facets": [...]}``.
QUALITY_KEY = "quality"

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,256}$")
_US_PER_DAY = 86_400 * 1_000_000


class InvalidEvent(LineageError):
    """The event cannot be stored; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """The limits of the rule set; the defaults are ``Settings.validation``'s."""

    max_message_bytes: int = 1 << 20
    max_future_us: int = 300 * 1_000_000
    #: ``None``: any age is accepted.
    max_past_us: int | None = None
    max_snapshot_values: int = 2_000
    max_facet_bytes: int = 64 << 10

    @classmethod
    def from_settings(cls, v: ValidationSettings) -> Limits:
        return cls(
            max_message_bytes=v.max_message_bytes,
            max_future_us=v.max_future_s * 1_000_000,
            max_past_us=None if v.max_past_days is None else v.max_past_days * _US_PER_DAY,
            max_snapshot_values=v.max_snapshot_values,
            max_facet_bytes=v.max_facet_bytes,
        )


@dataclass(frozen=True)
class DroppedFacet:
    where: str  # "run", "job", "inputs[0]", ...
    name: str
    size: int  # bytes of the facet's JSON
    sha256: str  # of the facet's JSON, so the dropped value can be matched to its source
    why: str  # "over_limit" or "not_an_object"

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where, "name": self.name, "bytes": self.size, "sha256": self.sha256, "why": self.why}


@dataclass
class Findings:
    """What an accepted event lacks or loses on the way into the store."""

    incomplete: list[str] = field(default_factory=list)
    dropped: list[DroppedFacet] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.incomplete or self.dropped)

    def as_dict(self) -> dict[str, Any]:
        return {"incomplete": list(self.incomplete), "dropped_facets": [d.as_dict() for d in self.dropped]}


def check_size(size: int, limits: Limits) -> None:
    """A message of ``size`` bytes; refused over ``max_message_bytes``."""
    if size > limits.max_message_bytes:
        raise InvalidEvent("oversize", f"message is {size} bytes, limit {limits.max_message_bytes}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _uuid(value: Any, what: str) -> None:
    if not isinstance(value, str) or not _UUID_RE.match(value.lower()):
        raise InvalidEvent("bad_id", f"{what} must be a UUID, got {_show(value)}")


def _token(value: Any, what: str) -> None:
    if not isinstance(value, str) or not _TOKEN_RE.match(value):
        raise InvalidEvent("bad_id", f"{what} must be 1-256 characters of [A-Za-z0-9._:@/+=-], got {_show(value)}")


def _required(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent("missing_field", f"{what} is required and empty")


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _time(value: Any, now_us: int, limits: Limits, what: str) -> None:
    if not isinstance(value, (int, datetime)) or isinstance(value, bool):
        raise InvalidEvent("missing_field", f"{what} is required")
    micros = to_micros(value)
    if micros > now_us + limits.max_future_us:
        raise InvalidEvent("time_future", f"{what} is {(micros - now_us) / 1e6:.0f}s ahead of the pipeline clock")
    if limits.max_past_us is not None and micros < now_us - limits.max_past_us:
        raise InvalidEvent("time_past", f"{what} is {(now_us - micros) / _US_PER_DAY:.0f} days old")


def _facets(facets: Mapping[str, Any] | None, where: str, limits: Limits, found: Findings) -> None:
    for name, value in (facets or {}).items():
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        data = text.encode()
        why = ""
        if len(data) > limits.max_facet_bytes:
            why = "over_limit"
        else:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                why = "not_an_object"
        if why:
            found.dropped.append(DroppedFacet(where, str(name), len(data), hashlib.sha256(data).hexdigest(), why))


def check_run_event(kind: str, ev: Mapping[str, Any], now_us: int, limits: Limits, *, facets: bool = True) -> Findings:
    """Dataset, feature and training events (OpenLineage RunEvent shape). ``facets=False`` skips
    the facet findings (they never refuse an event; the SDK's ``emit()`` leaves them to the pipeline)."""
    found = Findings()
    _uuid(ev.get("event_id"), "event_id")
    run, job = ev["run"], ev["job"]
    _uuid(run.get("runId"), "run.runId")
    if run.get("parentRunId") is not None:
        _uuid(run["parentRunId"], "run.parentRunId")
    _required(ev.get("producer"), "producer")
    _required(job.get("namespace"), "job.namespace")
    _required(job.get("name"), "job.name")
    _time(ev.get("eventTime"), now_us, limits, "eventTime")
    if facets:
        _facets(run.get("facets"), "run", limits, found)
        _facets(job.get("facets"), "job", limits, found)
    for side in ("inputs", "outputs"):
        for i, ds in enumerate(ev.get(side) or ()):
            _required(ds.get("namespace"), f"{side}[{i}].namespace")
            _required(ds.get("name"), f"{side}[{i}].name")
            if facets:
                _facets(ds.get("facets"), f"{side}[{i}]", limits, found)
    if kind == "feature":
        fs = ev.get("feature_set") or {}
        _required(fs.get("name"), "feature_set.name")
        _required(fs.get("version"), "feature_set.version")
    elif kind == "training":
        tr = ev.get("training") or {}
        _required(tr.get("model_name"), "training.model_name")
        _required(tr.get("model_version"), "training.model_version")
        for i, fs in enumerate(tr.get("feature_sets") or ()):
            _required(fs.get("name"), f"training.feature_sets[{i}].name")
            _required(fs.get("version"), f"training.feature_sets[{i}].version")
        if not _present(tr.get("code_version")) or tr.get("code_version") == "unknown":
            found.incomplete.append("training.code_version")
        if ev.get("eventType") == "COMPLETE" and not _present(tr.get("artifact_digest")):
            found.incomplete.append("training.artifact_digest")
    return found


def check_inference(
    ev: Mapping[str, Any],
    subject_id: Any,
    snapshot: Mapping[str, Any] | None,
    now_us: int,
    limits: Limits,
    *,
    sealed: bool = False,
) -> Findings:
    """Inference events; ``subject_id`` and ``snapshot`` in the clear, or ``sealed=True`` when
    they travel sealed and only the pipeline (which opens the seal) can check them."""
    _uuid(ev.get("event_id"), "event_id")
    _token(ev.get("prediction_id"), "prediction_id")
    for name in ("producer", "endpoint", "model_name", "model_version", "decision_type"):
        _required(ev.get(name), name)
    if not sealed and (not isinstance(subject_id, str) or not subject_id.strip()):
        raise InvalidEvent("missing_field", "subject_id is required and empty")
    score = ev.get("risk_score")
    if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score) or not 0.0 <= score <= 1.0:
        raise InvalidEvent("out_of_range", "risk_score must be a number in [0, 1]")
    _time(ev.get("event_time"), now_us, limits, "event_time")
    if snapshot is not None and not sealed:
        values = snapshot.get("values") or {}
        if len(values) > limits.max_snapshot_values:
            raise InvalidEvent("oversize", f"feature snapshot has {len(values)} values, limit {limits.max_snapshot_values}")
        fs = snapshot.get("feature_set")
        if fs is not None:
            _required(fs.get("name"), "feature_snapshot.feature_set.name")
            _required(fs.get("version"), "feature_snapshot.feature_set.version")
    return Findings()


def check_event(
    kind: str,
    ev: Mapping[str, Any],
    now_us: int,
    limits: Limits,
    subject_id: Any = None,
    snapshot: Mapping[str, Any] | None = None,
    *,
    sealed: bool = False,
    facets: bool = True,
) -> Findings:
    """Refuse (:class:`InvalidEvent`) or return what the stored record will lack; never mutates."""
    if kind == "inference":
        return check_inference(ev, subject_id, snapshot, now_us, limits, sealed=sealed)
    return check_run_event(kind, ev, now_us, limits, facets=facets)


def apply_findings(ev: MutableMapping[str, Any], found: Findings) -> None:
    """Drop the noted facets from ``ev`` and record the findings under :data:`QUALITY_KEY`."""
    if not found:
        return
    for d in found.dropped:
        if d.where in ("run", "job"):
            facets = ev[d.where].get("facets")
        else:
            side, _, rest = d.where.partition("[")
            facets = ev[side][int(rest.rstrip("]"))].get("facets")
        if isinstance(facets, MutableMapping):
            facets.pop(d.name, None)
    ev[QUALITY_KEY] = found.as_dict()
