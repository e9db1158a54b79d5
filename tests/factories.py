"""Event factories for every tier: lineage events in wire form (what the codec encodes and the
worker validates), graph records, OpenLineage RunEvents (JSON and openlineage-python objects) and
the SDK's typed events.

Each factory returns a complete, valid value from its defaults; keyword arguments override
fields, and the parts (datasets, jobs, feature sets, training facets) have factories of their
own, so a test spells out only what its assertions depend on. Ids are random and times are
"now" unless given; ``event_uuid(n)`` gives stable ids for hand-checked data.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from lineage.graph import GraphRecord, build_record

PII_FIELDS = ("subject_id", "feature_snapshot")  # what the worker splits off an inference event


def now_us() -> int:
    """The current time in epoch microseconds (the wire form of ``eventTime`` / ``event_time``)."""
    return int(time.time() * 1_000_000)


def uid() -> str:
    return str(uuid.uuid4())


def event_uuid(n: int) -> str:
    """The ``n``-th of a fixed series of UUIDv7-shaped ids."""
    return str(uuid.UUID(int=0x0190_0000_0000_7000_8000_0000_0000_0000 + n))


# -- parts of a run event (wire form) ----------------------------------------------------------
def dataset_ref(namespace: str = "postgres://db:5432", name: str = "shop.public.orders", version: str | None = None,
                facets: dict[str, str] | None = None) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "version": version, "facets": facets or {}}


def job_ref(namespace: str = "etl", name: str = "dataset_job", facets: dict[str, str] | None = None) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "facets": facets or {}}


def feature_set(name: str = "customer_fs", version: str = "3", features: Iterable[str] = ("income",),
                entity: str | None = "customer") -> dict[str, Any]:
    return {"name": name, "version": version, "features": list(features), "entity": entity}


def training_facet(model_name: str = "credit", model_version: str = "7", *,
                   artifact_digest: str | None = "sha256:" + "ab" * 32, code_version: str = "deadbeef",
                   feature_sets: Iterable[str] = ("customer_fs@3",), **extra: Any) -> dict[str, Any]:
    """The ``training`` part of a training event; ``feature_sets`` as ``name@version``."""
    refs = [dict(zip(("name", "version"), fs.split("@", 1))) for fs in feature_sets]
    return {"model_name": model_name, "model_version": model_version, "artifact_digest": artifact_digest,
            "code_version": code_version, "feature_sets": refs, **extra}


# -- lineage events (wire form) -----------------------------------------------------------------
def run_event(kind: str = "dataset", run_id: str | None = None, event_type: str = "COMPLETE", *,
              run_facets: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """A dataset, feature or training run event: orders read from Postgres, written to the lake.

    ``overrides`` replace top-level fields (``eventTime``, ``producer``, ``job``, ``inputs`` ...)."""
    ev: dict[str, Any] = {
        "event_id": uid(),
        "correlation_id": None,
        "eventType": event_type,
        "eventTime": now_us(),
        "producer": "https://example.com/etl",
        "run": {"runId": run_id or uid(), "parentRunId": None, "facets": run_facets or {}},
        "job": job_ref("etl", f"{kind}_job"),
        "inputs": [dataset_ref()],
        "outputs": [dataset_ref("s3://lake", "orders/clean")],
    }
    if kind == "feature":
        ev["feature_set"] = feature_set()
    if kind == "training":
        ev["training"] = training_facet()
    ev.update(overrides)
    return ev


def training_event(model: str = "credit", version: str = "7", run_id: str | None = None,
                   feature_sets: Iterable[str] = ("customer_fs@3",), **overrides: Any) -> dict[str, Any]:
    """A COMPLETE training run of ``model@version`` that read ``feature_sets`` (``name@version``)."""
    return run_event("training", run_id, training=training_facet(model, version, feature_sets=feature_sets), **overrides)


def inference_event(
    prediction_id: str | None = None,
    subject_id: str = "subject-1",
    snapshot: dict[str, str] | None = None,
    risk: float = 0.1,
    decision: str = "approve",
    regulatory_class: str | None = None,
    model: str = "credit",
    version: str = "7",
    **overrides: Any,
) -> dict[str, Any]:
    """A prediction as a scoring service emits it, PII included (``snapshot``: feature values)."""
    ev: dict[str, Any] = {
        "event_id": uid(),
        "correlation_id": None,
        "event_time": now_us(),
        "producer": "https://example.com/scoring",
        "endpoint": "score-v1",
        "model_name": model,
        "model_version": version,
        "prediction_id": f"p-{uuid.uuid4().hex}" if prediction_id is None else prediction_id,
        "decision_type": decision,
        "risk_score": risk,
        "regulatory_class": regulatory_class,
        "subject_id": subject_id,
        "training_run_id": None,
        "feature_snapshot": None
        if snapshot is None
        else {"feature_set": {"name": "customer_fs", "version": "3"}, "values": snapshot},
    }
    ev.update(overrides)
    return ev


def without_pii(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event`` without the fields the worker splits off before validation and the graph."""
    return {k: v for k, v in event.items() if k not in PII_FIELDS}


def inference_record(correlation_id: str = "c", inference: dict[str, Any] | None = None,
                     **event: Any) -> GraphRecord:
    """The graph record of a PII-free prediction; ``event`` goes to ``inference_event``, ``inference``
    is the worker's per-prediction row (tier, join result)."""
    return build_record("inference", without_pii(inference_event(**event)), correlation_id, inference)


# -- OpenLineage --------------------------------------------------------------------------------
def ol_dataset(namespace: str = "postgres://db:5432", name: str = "shop.public.orders", version: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """An OpenLineage dataset as JSON; ``version`` goes to the ``version`` dataset facet."""
    ds: dict[str, Any] = {"namespace": namespace, "name": name}
    if version is not None:
        ds["facets"] = {"version": {"datasetVersion": version}}
    ds.update(extra)
    return ds


def openlineage_event(event_type: str = "COMPLETE", run_id: str | None = None, *, event_time: str | None = None,
                      producer: str = "https://github.com/apache/airflow", job: tuple[str, str] = ("airflow", "dag.task"),
                      run_facets: dict[str, Any] | None = None, inputs: Iterable[dict[str, Any]] | None = None,
                      outputs: Iterable[dict[str, Any]] = (), **overrides: Any) -> dict[str, Any]:
    """An OpenLineage RunEvent as JSON (a task reading the orders table); ``overrides`` replace top-level keys."""
    ev: dict[str, Any] = {
        "eventType": event_type,
        "eventTime": event_time or datetime.now(timezone.utc).isoformat(),
        "producer": producer,
        "run": {"runId": run_id or uid(), "facets": dict(run_facets or {})},
        "job": {"namespace": job[0], "name": job[1], "facets": {}},
        "inputs": [ol_dataset()] if inputs is None else list(inputs),
        "outputs": list(outputs),
    }
    ev.update(overrides)
    return ev


def openlineage_client_event(run_id: str | None = None, event_type: Any = "COMPLETE",
                             source: tuple[str, str] | None = ("postgres://db:5432", "shop.public.orders"),
                             target: tuple[str, str] | None = ("s3://lake", "orders/clean"), *,
                             job: tuple[str, str] = ("airflow", "orders_daily"),
                             event_time: str = "2026-06-15T08:00:00.000000+00:00",
                             producer: str = "https://github.com/apache/airflow") -> Any:
    """The same kind of run as an openlineage-python ``RunEvent`` (what the stock clients emit)."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

    return RunEvent(
        eventType=RunState(event_type), eventTime=event_time, run=Run(runId=run_id or uid()),
        job=Job(namespace=job[0], name=job[1]), producer=producer,
        inputs=[InputDataset(namespace=source[0], name=source[1])] if source else [],
        outputs=[OutputDataset(namespace=target[0], name=target[1])] if target else [],
    )


# -- the SDK's typed events ---------------------------------------------------------------------
def sdk_event(kind: str, **overrides: Any) -> Any:
    """A typed ``producers`` event of ``kind`` (a fraud model's lineage); ``overrides`` replace
    constructor arguments."""
    from producers import events as ev

    lake = ev.Dataset("s3://lake", "orders/2026-06-15", version="sha256:ab")
    if kind == "dataset":
        cls, args = ev.DatasetEvent, {
            "eventType": "COMPLETE", "producer": "https://x/etl", "job": ev.Job("etl", "orders_daily"),
            "run": ev.Run(uid(), facets={"nominalTime": {"nominalStartTime": "2026-06-15T00:00:00Z"}}),
            "inputs": [ev.Dataset("postgres://db:5432", "shop.public.orders")], "outputs": [lake],
        }
    elif kind == "feature":
        cls, args = ev.FeatureEvent, {
            "eventType": "COMPLETE", "run": ev.Run(uid()), "job": ev.Job("fe", "fraud"), "producer": "https://x/fe",
            "feature_set": ev.FeatureSet("fraud", "7", ["amount"], "customer"), "inputs": [lake],
        }
    elif kind == "training":
        cls, args = ev.TrainingEvent, {
            "eventType": "COMPLETE", "run": ev.Run(uid()), "job": ev.Job("ml", "train"), "producer": "https://x/tr",
            "training": ev.Training("fraud", "12", "abc123", "sha256:ff", [ev.FeatureSetRef("fraud", "7")],
                                    {"s3://lake/orders": "sha256:ab"}, {"lr": 0.1}, {"auc": 0.91}),
        }
    elif kind == "inference":
        cls, args = ev.InferenceEvent, {
            "producer": "https://x/api", "endpoint": "fraud-v2", "model_name": "fraud", "model_version": "12",
            "prediction_id": "p-1", "decision_type": "deny", "risk_score": 0.93, "subject_id": "cust-1",
            "regulatory_class": "credit",
            "feature_snapshot": ev.FeatureSnapshot({"amount": 12.5}, ev.FeatureSetRef("fraud", "7")),
        }
    else:
        raise ValueError(f"unknown event kind {kind!r}")
    return cls(**{**args, **overrides})
