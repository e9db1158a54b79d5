"""Enrichment: deterministic correlation ids and the model-version -> training lineage join.

A prediction's inference lineage (:func:`inference_lineage`) is that join plus its sampling tier.

Correlation id, first match wins (so a replay yields the same id):
1. header ``correlation_id`` (the emitter SDK's propagation);
2. the event's own ``correlation_id`` field;
3. W3C ``traceparent`` header: the trace id as a UUID;
4. derived: UUIDv5 of the root run (OpenLineage ``parent`` facet's root, else the parent run,
   else the run) for run events; of model version + prediction id for inference events.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from lineage.graph import to_micros
from stream_apps.models import ModelLineage
from stream_apps.sampling import Decision

#: Fixed namespace for derived ids: changing it would change every derived correlation id.
CORRELATION_NS = uuid.UUID("8f0a3c5e-2d4b-5e61-9a7c-4b1d2e3f5a60")
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_HEADER_RE = re.compile(r"^[\x21-\x7e]{1,128}$")


def header(headers: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    for key, value in headers:
        if key == name and value:
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                return None
    return None


def root_run(run: Mapping[str, Any]) -> str:
    facet = (run.get("facets") or {}).get("parent")
    if facet:
        try:
            parent = orjson.loads(facet)
            root = (parent.get("root") or {}).get("run", {}).get("runId") or parent.get("run", {}).get("runId")
        except (orjson.JSONDecodeError, AttributeError):
            root = None
        if isinstance(root, str) and root:
            return root
    return str(run.get("parentRunId") or run["runId"])


def correlation_id(kind: str, ev: Mapping[str, Any], headers: Sequence[tuple[str, bytes | None]]) -> tuple[str, str]:
    """(correlation id, where it came from: header|event|traceparent|derived)."""
    given = header(headers, "correlation_id")
    if given and _HEADER_RE.match(given):
        return given, "header"
    own = ev.get("correlation_id")
    if isinstance(own, str) and _HEADER_RE.match(own):
        return own, "event"
    tp = header(headers, "traceparent")
    m = _TRACEPARENT_RE.match(tp.strip().lower()) if tp else None
    if m and m[1] != "0" * 32:
        return str(uuid.UUID(hex=m[1])), "traceparent"
    if kind == "inference":
        name = f"prediction:{ev['model_name']}@{ev['model_version']}/{ev['prediction_id']}"
    else:
        name = f"run:{root_run(ev['run'])}"
    return str(uuid.uuid5(CORRELATION_NS, name)), "derived"


def model_key(model_name: str, model_version: str) -> str:
    return f"{model_name}@{model_version}"


def training_lineage(ev: Mapping[str, Any]) -> tuple[str, ModelLineage] | None:
    """Table entry a training event contributes: ``model@version`` -> its training run + feature sets."""
    tr = ev.get("training")
    if not tr or ev["eventType"] in ("FAIL", "ABORT"):
        return None
    return model_key(tr["model_name"], tr["model_version"]), {
        "training_run_id": ev["run"]["runId"],
        "feature_sets": sorted({f"{fs['name']}@{fs['version']}" for fs in tr.get("feature_sets") or ()}),
        "state": ev["eventType"],
        "event_time": to_micros(ev["eventTime"]),
    }


def merge_lineage(current: ModelLineage | None, new: ModelLineage) -> ModelLineage:
    """A COMPLETE entry is never replaced by an earlier START/RUNNING of the same run."""
    if (
        current
        and current.get("training_run_id") == new["training_run_id"]
        and current.get("state") == "COMPLETE"
        and new["state"] != "COMPLETE"
    ):
        return ModelLineage(**current)
    return ModelLineage(**new)


def inference_lineage(
    ev: dict[str, Any],
    entry: ModelLineage | None,
    subject_ref: str,
    snapshot: Mapping[str, Any] | None,
    correlation_source: str,
    decision: Decision,
) -> dict[str, Any]:
    """The ``inference`` dict of a prediction's graph record (:class:`stream_apps.models.InferenceLineage`).

    Joins the prediction to its model version's training run (``entry``, from the model-lineage
    table) unless the event names one, and writes the run and the subject reference into ``ev``.
    Snapshot fields start empty: the batch processor fills them once the snapshot is sealed.
    """
    given = ev.get("training_run_id") or ""
    run = given or (entry["training_run_id"] if entry else "")
    ev["training_run_id"] = run or None
    ev["subject_ref"] = subject_ref
    feature_sets = set(entry["feature_sets"] if entry else ())
    fs = (snapshot or {}).get("feature_set")
    if fs:
        feature_sets.add(f"{fs['name']}@{fs['version']}")
    return {
        "prediction_id": ev["prediction_id"],
        "model_name": ev["model_name"],
        "model_version": ev["model_version"],
        "endpoint": ev["endpoint"],
        "decision_type": ev["decision_type"],
        "risk_score": float(ev["risk_score"]),
        "regulatory_class": ev.get("regulatory_class") or "",
        "subject_ref": subject_ref,
        "training_run_id": run,
        "training_run_source": "event" if given else ("table" if run else ""),
        "feature_sets": sorted(feature_sets),
        "tier": decision.tier,
        "tier_reason": decision.reason,
        "snapshot_pointer": "",
        "snapshot_sha256": "",
        "snapshot_status": "none",
        "lineage_complete": False,
        "unknown_model_version": entry is None,
        "correlation_source": correlation_source,
    }
