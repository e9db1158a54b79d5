"""OpenLineage events (spec 2-0-2) JSON -> the project's event records.

RunEvents become events of one of the four classes (below); the static ``DatasetEvent`` and
``JobEvent`` become ``dataset`` records marked with the :data:`STATIC_FACET` run facet.

Used by the HTTP intake, the stream worker (for the ``openlineage.events`` topic the stock
``openlineage-python`` Kafka transport writes) and ``Emitter.emit_openlineage``.

Classification, first match wins:

1. a run or job facet ``lineage`` (``{"class": "training"}``) naming the class;
2. the standard ``jobType`` job facet's ``jobType`` (TRAINING, FEATURE, INFERENCE, ...);
3. presence of the project's facets: run facet ``inference`` -> inference, ``training``
   -> training, ``feature_set`` -> feature;
4. otherwise ``dataset``.

The class facets carry the class-specific fields under the Avro names (``training``:
``model_name``, ``model_version``, ``code_version``, ...; ``feature_set``: ``name``,
``version``, ``features``, ``entity``; ``inference``: ``model_name``, ``model_version``,
``prediction_id``, ``decision_type``, ``risk_score``, ``subject_id``, ...).
OpenLineage events have no event id; a deterministic UUIDv7 (time = ``eventTime``, the
rest from SHA-256 of runId + eventType + eventTime) makes a re-sent event deduplicate.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from lineage.graph import to_micros
from lineage.pii.sealing import Sealer, seal_pii, snapshot_record
from producers.events import OPENLINEAGE_SCHEMA_URL
from producers.exceptions import OpenLineageError

EVENT_TYPES = frozenset(("START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"))
CLASSES = ("dataset", "feature", "training", "inference")
_JOB_TYPES = {
    "TRAINING": "training", "TRAIN": "training", "MODEL_TRAINING": "training",
    "FEATURE": "feature", "FEATURE_ENGINEERING": "feature", "FEATURES": "feature",
    "INFERENCE": "inference", "PREDICTION": "inference", "SCORING": "inference",
}
_INFERENCE_REQUIRED = ("model_name", "model_version", "prediction_id", "decision_type", "risk_score", "subject_id")


def to_dict(event: Any) -> dict[str, Any]:
    """An OpenLineage event as JSON-shaped dict (accepts a dict, JSON text/bytes or a client object)."""
    if isinstance(event, Mapping):
        return dict(event)
    if isinstance(event, (str, bytes, bytearray)):
        try:
            obj = json.loads(event)
        except ValueError as exc:
            raise OpenLineageError("invalid_json", str(exc)) from None
        if not isinstance(obj, dict):
            raise OpenLineageError("not_an_object", f"top level is {type(obj).__name__}, not an object")
        return obj
    from openlineage.client.serde import Serde  # optional dependency, only for client objects

    return json.loads(Serde.to_json(event))  # type: ignore[no-any-return]


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise OpenLineageError("invalid_field", f"{where} must be an object, got {type(value).__name__}")
    return dict(value)


def _str(container: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = container.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise OpenLineageError("missing_field" if value is None else "invalid_field",
                               f"{where}.{key} must be a non-empty string")
    return value


def _facets(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    facets = _obj(value, where)
    return {str(k): json.dumps(v, separators=(",", ":"), sort_keys=True) for k, v in facets.items() if v is not None}


def event_time_micros(value: Any) -> int:
    """``eventTime`` (ISO 8601 with offset; naive means UTC) as microseconds since the epoch."""
    if not isinstance(value, str):
        raise OpenLineageError("missing_field" if value is None else "invalid_field", "eventTime must be an ISO 8601 string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise OpenLineageError("invalid_field", f"eventTime {value!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return to_micros(dt)


def derived_event_id(run_id: str, event_type: str, event_time: str, time_micros: int) -> str:
    """Deterministic UUIDv7: eventTime's milliseconds, then bits of SHA-256(runId|eventType|eventTime)."""
    digest = int.from_bytes(hashlib.sha256(f"{run_id}|{event_type}|{event_time}".encode()).digest()[:10])
    ms = max(0, time_micros // 1000) & ((1 << 48) - 1)
    rand_a = digest >> 68 & 0xFFF
    rand_b = digest & ((1 << 62) - 1)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0x2 << 62) | rand_b))


def _dataset(d: Any, where: str) -> dict[str, Any]:
    d = _obj(d, where)
    facets = {**_obj(d.get("facets") or {}, f"{where}.facets"),
              **_obj(d.get("inputFacets") or {}, f"{where}.inputFacets"),
              **_obj(d.get("outputFacets") or {}, f"{where}.outputFacets")}
    version = None
    vf = facets.get("version")
    if isinstance(vf, Mapping) and isinstance(vf.get("datasetVersion"), str):
        version = vf["datasetVersion"]
    return {
        "namespace": _str(d, "namespace", where),
        "name": _str(d, "name", where),
        "version": version,
        "facets": _facets(facets, f"{where}.facets"),
    }


def classify(run_facets: Mapping[str, Any], job_facets: Mapping[str, Any]) -> str:
    """The project event class of an OpenLineage run (see module docstring)."""
    for facets in (run_facets, job_facets):
        named = facets.get("lineage")
        if isinstance(named, Mapping):
            cls = named.get("class") or named.get("eventClass")
            if cls not in CLASSES:
                raise OpenLineageError("invalid_facet", f"lineage facet class must be one of {', '.join(CLASSES)}, got {cls!r}")
            return str(cls)
    job_type = job_facets.get("jobType")
    if isinstance(job_type, Mapping) and isinstance(job_type.get("jobType"), str):
        cls = _JOB_TYPES.get(job_type["jobType"].upper())
        if cls is not None:
            return cls
    if isinstance(run_facets.get("inference"), Mapping):
        return "inference"
    if isinstance(run_facets.get("training"), Mapping):
        return "training"
    if isinstance(run_facets.get("feature_set"), Mapping):
        return "feature"
    return "dataset"


def _class_facet(run_facets: Mapping[str, Any], job_facets: Mapping[str, Any], name: str, kind: str) -> dict[str, Any]:
    facet = run_facets.get(name) if isinstance(run_facets.get(name), Mapping) else job_facets.get(name)
    if not isinstance(facet, Mapping):
        raise OpenLineageError("missing_facet", f"a {kind} event needs a '{name}' run facet")
    return {k: v for k, v in facet.items() if not k.startswith("_")}


def from_openlineage(obj: Any) -> tuple[str, dict[str, Any]]:
    """Convert one OpenLineage RunEvent to ``(kind, record)``; :class:`OpenLineageError` if invalid."""
    ev = _obj(obj, "event")
    if "run" not in ev:
        if "dataset" in ev:
            return "dataset", _static_event(ev, "DatasetEvent")
        if "job" in ev:
            return "dataset", _static_event(ev, "JobEvent")
        raise OpenLineageError("not_a_run_event", "neither a RunEvent ('run'), a DatasetEvent ('dataset') nor a JobEvent ('job')")
    run = _obj(ev["run"], "run")
    job = _obj(ev.get("job"), "job")
    run_id = _str(run, "runId", "run")
    assert run_id is not None
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise OpenLineageError("invalid_field", f"run.runId {run_id!r} is not a UUID") from None
    event_type = ev.get("eventType") or "OTHER"
    if event_type not in EVENT_TYPES:
        raise OpenLineageError("invalid_field", f"eventType {event_type!r} is not one of {', '.join(sorted(EVENT_TYPES))}")
    event_time = ev.get("eventTime")
    micros = event_time_micros(event_time)
    producer = _str(ev, "producer", "event")
    run_facets = _obj(run.get("facets") or {}, "run.facets")
    job_facets = _obj(job.get("facets") or {}, "job.facets")
    for key in ("inputs", "outputs"):
        if ev.get(key) is not None and not isinstance(ev[key], list):
            raise OpenLineageError("invalid_field", f"{key} must be an array")
    kind = classify(run_facets, job_facets)
    event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
    event_id = event_id or derived_event_id(run_id, event_type, str(event_time), micros)

    if kind == "inference":
        f = _class_facet(run_facets, job_facets, "inference", kind)
        sealed = f.get("sealed")
        if sealed is not None and (not isinstance(sealed, str) or f.get("subject_id") is not None or f.get("feature_snapshot") is not None):
            raise OpenLineageError("invalid_facet", "inference.sealed must be a sealed envelope string, in place of subject_id and feature_snapshot")
        missing = [k for k in _INFERENCE_REQUIRED if f.get(k) is None and not (sealed and k == "subject_id")]
        if missing:
            raise OpenLineageError("missing_facet_field", f"inference facet lacks {', '.join(missing)}")
        try:
            risk = float(f["risk_score"])
        except (TypeError, ValueError):
            raise OpenLineageError("invalid_facet", "inference.risk_score must be a number") from None
        snap = f.get("feature_snapshot")
        record: dict[str, Any] = {
            "event_id": event_id,
            "correlation_id": None,
            "event_time": micros,
            "producer": producer,
            "endpoint": str(f.get("endpoint") or _str(job, "name", "job")),
            "model_name": str(f["model_name"]),
            "model_version": str(f["model_version"]),
            "prediction_id": str(f["prediction_id"]),
            "decision_type": str(f["decision_type"]),
            "risk_score": risk,
            "regulatory_class": f.get("regulatory_class"),
            "subject_id": "" if sealed else str(f["subject_id"]),
            "training_run_id": f.get("training_run_id"),
            "feature_snapshot": None,
            "sealed": sealed,
        }
        if isinstance(snap, Mapping):
            values = _obj(snap.get("values") or {}, "inference.feature_snapshot.values")
            fs = snap.get("feature_set")
            record["feature_snapshot"] = {
                "feature_set": {"name": str(fs["name"]), "version": str(fs["version"])} if isinstance(fs, Mapping) else None,
                "values": {k: json.dumps(v) for k, v in values.items()},
            }
        return kind, record

    parent = run_facets.get("parent")
    parent_run_id = None
    if isinstance(parent, Mapping) and isinstance(parent.get("run"), Mapping):
        parent_run_id = parent["run"].get("runId") if isinstance(parent["run"].get("runId"), str) else None
    record = {
        "event_id": event_id,
        "correlation_id": None,
        "eventType": event_type,
        "eventTime": micros,
        "producer": producer,
        "schemaURL": ev.get("schemaURL") if isinstance(ev.get("schemaURL"), str) else OPENLINEAGE_SCHEMA_URL,
        "run": {"runId": run_id, "parentRunId": parent_run_id, "facets": _facets(run_facets, "run.facets")},
        "job": {"namespace": _str(job, "namespace", "job"), "name": _str(job, "name", "job"),
                "facets": _facets(job_facets, "job.facets")},
        "inputs": [_dataset(d, f"inputs[{i}]") for i, d in enumerate(ev.get("inputs") or [])],
        "outputs": [_dataset(d, f"outputs[{i}]") for i, d in enumerate(ev.get("outputs") or [])],
    }
    if kind == "feature":
        f = _class_facet(run_facets, job_facets, "feature_set", kind)
        if not isinstance(f.get("name"), str) or f.get("version") is None:
            raise OpenLineageError("missing_facet_field", "feature_set facet needs name and version")
        feats = f.get("features") or []
        if not isinstance(feats, list):
            raise OpenLineageError("invalid_facet", "feature_set.features must be an array")
        record["feature_set"] = {"name": f["name"], "version": str(f["version"]),
                                 "features": [str(x) for x in feats], "entity": f.get("entity")}
    elif kind == "training":
        f = _class_facet(run_facets, job_facets, "training", kind)
        missing = [k for k in ("model_name", "model_version") if f.get(k) is None]
        if missing:
            raise OpenLineageError("missing_facet_field", f"training facet lacks {', '.join(missing)}")
        code_version = f.get("code_version")
        scl = job_facets.get("sourceCodeLocation")
        if code_version is None and isinstance(scl, Mapping):
            code_version = scl.get("version")
        fsets = f.get("feature_sets") or []
        if not isinstance(fsets, list) or not all(isinstance(x, Mapping) and "name" in x and "version" in x for x in fsets):
            raise OpenLineageError("invalid_facet", "training.feature_sets must be [{name, version}, ...]")
        try:
            metrics = {str(k): float(v) for k, v in _obj(f.get("metrics") or {}, "training.metrics").items()}
        except (TypeError, ValueError):
            raise OpenLineageError("invalid_facet", "training.metrics values must be numbers") from None
        record["training"] = {
            "model_name": str(f["model_name"]),
            "model_version": str(f["model_version"]),
            "artifact_digest": f.get("artifact_digest"),
            "code_version": str(code_version or "unknown"),
            "feature_sets": [{"name": str(x["name"]), "version": str(x["version"])} for x in fsets],
            "dataset_digests": {str(k): str(v) for k, v in _obj(f.get("dataset_digests") or {}, "training.dataset_digests").items()},
            "hyperparameters": {str(k): v if isinstance(v, str) else json.dumps(v)
                                for k, v in _obj(f.get("hyperparameters") or {}, "training.hyperparameters").items()},
            "metrics": metrics,
        }
    return kind, record


#: Run facet marking a record converted from static lineage (spec 2-0-2 ``DatasetEvent`` /
#: ``JobEvent``): ``{"eventClass": "DatasetEvent" | "JobEvent"}``. Such a record has no run;
#: :func:`lineage.graph.build_record` stores its dataset (facets) or its job's declared inputs
#: and outputs (``declared_input`` / ``declared_output`` edges, told apart from run edges).
STATIC_FACET = "static_lineage"
_STATIC_NS = uuid.UUID("6f1c9a52-3b0e-5d7a-9c41-2e8b7f3d0a15")


def _static_event(ev: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A DatasetEvent or JobEvent as a ``dataset`` record with the :data:`STATIC_FACET` run facet.

    The run id is derived from the dataset or job (UUIDv5), the event id from the whole event, so
    a re-sent static event deduplicates and a changed one is stored as a new statement.
    """
    event_time = ev.get("eventTime")
    micros = event_time_micros(event_time)
    producer = _str(ev, "producer", "event")
    if what == "DatasetEvent":
        ds = _dataset(ev["dataset"], "dataset")
        job = {"namespace": ds["namespace"], "name": ds["name"], "facets": {}}
        inputs: list[dict[str, Any]] = []
        outputs = [ds]
        subject = f"dataset:{ds['namespace']}/{ds['name']}"
    else:
        j = _obj(ev["job"], "job")
        job = {"namespace": _str(j, "namespace", "job"), "name": _str(j, "name", "job"),
               "facets": _facets(j.get("facets"), "job.facets")}
        for key in ("inputs", "outputs"):
            if ev.get(key) is not None and not isinstance(ev[key], list):
                raise OpenLineageError("invalid_field", f"{key} must be an array")
        inputs = [_dataset(d, f"inputs[{i}]") for i, d in enumerate(ev.get("inputs") or [])]
        outputs = [_dataset(d, f"outputs[{i}]") for i, d in enumerate(ev.get("outputs") or [])]
        subject = f"job:{job['namespace']}/{job['name']}"
    run_id = str(uuid.uuid5(_STATIC_NS, subject))
    content = hashlib.sha256(json.dumps(ev, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
    return {
        "event_id": derived_event_id(run_id, f"{what}:{content}", str(event_time), micros),
        "correlation_id": None,
        "eventType": "OTHER",
        "eventTime": micros,
        "producer": producer,
        "schemaURL": ev.get("schemaURL") if isinstance(ev.get("schemaURL"), str) else OPENLINEAGE_SCHEMA_URL,
        "run": {"runId": run_id, "parentRunId": None,
                "facets": {STATIC_FACET: json.dumps({"eventClass": what}, separators=(",", ":"))}},
        "job": job,
        "inputs": inputs,
        "outputs": outputs,
    }


def seal_openlineage(event: Mapping[str, Any], public_key: str | Sealer) -> dict[str, Any]:
    """A copy of an OpenLineage event whose ``inference`` facet carries its PII sealed.

    For services that send with the stock OpenLineage client (HTTP or Kafka transport): the
    facet's ``subject_id`` and ``feature_snapshot`` are replaced by ``sealed``, an envelope only
    the pipeline can open, before the event leaves the process. Other events are returned as
    they are.
    """
    out = json.loads(json.dumps(event))
    sealer = Sealer(public_key) if isinstance(public_key, str) else public_key
    for part in ("run", "job"):
        facets = out.get(part, {}).get("facets") if isinstance(out.get(part), dict) else None
        facet = facets.get("inference") if isinstance(facets, dict) else None
        if isinstance(facet, dict) and ("subject_id" in facet or "feature_snapshot" in facet):
            snap = snapshot_record(facet.pop("feature_snapshot", None), typed=True)
            facet["sealed"] = seal_pii(sealer, str(facet.get("prediction_id")), facet.pop("subject_id", None), snap)
    return out
