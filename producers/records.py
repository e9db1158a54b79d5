"""Turn what callers emit into records that fit the Avro schemas, and pick partition keys.

Runs on the emitter's background thread (never the caller's). Only conveniences documented in
:mod:`producers.events` are applied; anything else that does not fit is left for the codec to
reject with a field-level reason.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import orjson

from lineage.graph import to_micros

_RUN_KINDS = frozenset(("dataset", "feature", "training"))


def _micros(value: Any) -> Any:
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return value  # the codec names the field
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return to_micros(dt)
    if isinstance(value, datetime):
        return to_micros(value)
    return value


#: A time given as ISO text, ``datetime`` or integer microseconds -> microseconds (other values as they are).
time_micros = _micros


def _json_values(m: Any, strings_too: bool = False) -> Any:
    """JSON-encode the values of a string map (facets, snapshot values) that are not yet strings."""
    if not isinstance(m, Mapping):
        return m
    return {
        k: v if isinstance(v, str) and not strings_too else orjson.dumps(v).decode()
        for k, v in m.items()
    }


def _datasets(items: Any) -> Any:
    if not isinstance(items, list):
        return items
    for d in items:
        if isinstance(d, dict) and d.get("facets"):
            d["facets"] = _json_values(d["facets"])
    return items


def normalize(kind: str, rec: dict[str, Any], typed: bool) -> dict[str, Any]:
    """Apply the typed-API conveniences in place; returns ``rec``.

    ``typed``: the record came from a :mod:`producers.events` class, whose snapshot values are
    always JSON-encoded (a string ``"DE"`` becomes ``"\\"DE\\""``); raw records are trusted to
    carry JSON already where they pass strings.
    """
    if kind in _RUN_KINDS:
        if "eventTime" in rec:
            rec["eventTime"] = _micros(rec["eventTime"])
        for part in ("run", "job"):
            sub = rec.get(part)
            if isinstance(sub, dict) and sub.get("facets"):
                sub["facets"] = _json_values(sub["facets"])
        _datasets(rec.get("inputs"))
        _datasets(rec.get("outputs"))
        tr = rec.get("training") if kind == "training" else None
        if isinstance(tr, dict):
            hp = tr.get("hyperparameters")
            if isinstance(hp, Mapping):
                tr["hyperparameters"] = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in hp.items()}
            metrics = tr.get("metrics")
            if isinstance(metrics, Mapping):
                tr["metrics"] = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in metrics.items()}
    elif kind == "inference":
        if "event_time" in rec:
            rec["event_time"] = _micros(rec["event_time"])
        snap = rec.get("feature_snapshot")
        if isinstance(snap, dict):
            snap["values"] = _json_values(snap.get("values"), strings_too=typed)
        score = rec.get("risk_score")
        if isinstance(score, int) and not isinstance(score, bool):
            rec["risk_score"] = float(score)
    return rec


def _facet(facets: Any, name: str) -> Any:
    """A run or job facet as a mapping (records carry facets as JSON text, typed events as dicts)."""
    value = facets.get(name) if isinstance(facets, Mapping) else None
    if isinstance(value, (str, bytes)):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, Mapping) else None


def _job_of(facet: Any) -> str | None:
    job = facet.get("job") if isinstance(facet, Mapping) else None
    if isinstance(job, Mapping) and isinstance(job.get("namespace"), str) and isinstance(job.get("name"), str):
        return f"{job['namespace']}/{job['name']}"
    return None


def partition_key(kind: str, rec: Mapping[str, Any]) -> str | None:
    """The Kafka key, as OpenLineage clients key their events.

    Run events: ``run:<namespace>/<name>`` of the root job (``parent.root.job``), else of the
    parent job, else of the event's own job, so every run of one root job (an Airflow DAG run
    with its task runs and the Spark applications they start) stays ordered on one partition,
    whichever client emitted it. Static events: ``dataset:<ns>/<name>`` / ``job:<ns>/<name>``.
    Inference: ``<model name>@<version>``.
    """
    if kind == "inference":
        return f"{rec.get('model_name')}@{rec.get('model_version')}"
    run, job = rec.get("run"), rec.get("job")
    if not isinstance(run, Mapping) or not isinstance(job, Mapping):
        return None
    facets = run.get("facets")
    static = _facet(facets, "static_lineage")  # a DatasetEvent's "job" is its dataset
    if static is not None:
        what = "dataset" if static.get("eventClass") == "DatasetEvent" else "job"
        return f"{what}:{job.get('namespace')}/{job.get('name')}"
    parent = _facet(facets, "parent")
    if parent is not None:
        named = _job_of(parent.get("root")) or _job_of(parent)
        if named:
            return f"run:{named}"
    return f"run:{job.get('namespace')}/{job.get('name')}"
