"""A realistic, reproducible lineage scenario for the demo and the end-to-end tests.

A lending platform: two Postgres source tables feed a daily ETL into the lake, a feature job
turns that into a versioned feature set, two training runs produce two versions of a credit
risk model, and an inference service makes a few thousand predictions with both versions.
Everything is derived from a seed, so two builds with the same seed are identical.
"""
from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

SOURCE_NS = "postgres://core-db.prod:5432"
SOURCE_TABLES = ("lending.public.customers", "lending.public.loan_applications")
LAKE_NS = "s3://acme-lake"
LAKE_TABLE = "warehouse/loan_applications_daily"
FEATURE_SET = "credit_features"
MODEL = "credit_risk"
ENDPOINT = "credit-decision-api"
_NS = uuid.UUID("6f1c3c1e-6a57-4c55-9a3e-0d4c7c1d2b10")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _event_id(rng: random.Random, micros: int) -> str:
    """A UUIDv7 for an event at `micros`, drawn from the seed: re-running the scenario re-sends
    the same ids, so the pipeline dedups it instead of storing it twice."""
    value = ((micros // 1000) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0x2 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def _micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _digest(*parts: str) -> str:
    return "sha256:" + uuid.uuid5(_NS, "/".join(parts)).hex * 2


@dataclass
class Scenario:
    """Events in emission order as (kind, record) pairs, plus handles the demo asks about."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prediction_ids: list[str] = field(default_factory=list)
    model_versions: tuple[str, ...] = ()

    @property
    def event_ids(self) -> list[str]:
        return [record["event_id"] for _, record in self.events]

    @property
    def sample_prediction(self) -> str:
        return self.prediction_ids[len(self.prediction_ids) // 2]

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.events if k == kind)


def _run_event(
    kind: str, etype: str, t: datetime, job: str, run_id: str,
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": "",
        "correlation_id": None,
        "eventType": etype,
        "eventTime": _micros(t),
        "producer": "https://github.com/acme/data-platform/tree/v2.4.1",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "parentRunId": None, "facets": {}},
        "job": {"namespace": "airflow://acme-prod", "name": job, "facets": {
            "jobType": json.dumps({"processingType": "BATCH", "integration": "AIRFLOW", "jobType": "TASK"}),
        }},
        "inputs": inputs,
        "outputs": outputs,
        **extra,
    }


def _ds(ns: str, name: str, version: str | None = None) -> dict[str, Any]:
    return {"namespace": ns, "name": name, "version": version, "facets": {}}


def build(predictions: int = 3000, seed: int = 7, start: datetime | None = None) -> Scenario:
    """The whole scenario: 6 daily ETL runs (June 14-19), 2 feature versions, 2 model versions."""
    rng = random.Random(seed)
    t0 = start or datetime(2026, 6, 14, 2, 0, tzinfo=timezone.utc)
    sc = Scenario(model_versions=("7", "8"))
    sources = [_ds(SOURCE_NS, name) for name in SOURCE_TABLES]
    lake_versions: list[str] = []
    for day in range(6):
        t = t0 + timedelta(days=day)
        rid = _uuid(rng)
        version = _digest(LAKE_TABLE, str(day))
        lake_versions.append(version)
        out = [_ds(LAKE_NS, LAKE_TABLE, version)]
        sc.events.append(("dataset", _run_event("dataset", "START", t, "etl.loan_applications_daily", rid, sources, out)))
        sc.events.append(("dataset", _run_event("dataset", "COMPLETE", t + timedelta(minutes=12), "etl.loan_applications_daily", rid, sources, out)))

    features = ["income", "debt_to_income", "age_band", "delinquencies_24m", "utilisation"]
    for fs_version, day in (("3", 2), ("4", 5)):
        t = t0 + timedelta(days=day, hours=1)
        rid = _uuid(rng)
        lake_in = [_ds(LAKE_NS, LAKE_TABLE, lake_versions[day])]
        fs = {"name": FEATURE_SET, "version": fs_version,
              "features": features + (["recent_inquiries"] if fs_version == "4" else []), "entity": "customer"}
        for etype, dt in (("START", 0), ("COMPLETE", 7)):
            sc.events.append(("feature", _run_event(
                "feature", etype, t + timedelta(minutes=dt), "features.credit_features", rid, lake_in,
                [_ds("feast://acme-feature-store", f"{FEATURE_SET}/v{fs_version}")], feature_set=fs)))

    for mv, fs_version, day, code, lr in (("7", "3", 2, "a1f9c3e", "0.05"), ("8", "4", 5, "c7d2b18", "0.03")):
        t = t0 + timedelta(days=day, hours=3)
        rid = _uuid(rng)
        training = {
            "model_name": MODEL, "model_version": mv, "artifact_digest": None, "code_version": code,
            "feature_sets": [{"name": FEATURE_SET, "version": fs_version}],
            "dataset_digests": {f"{LAKE_NS}/{LAKE_TABLE}": lake_versions[day]},
            "hyperparameters": {"learning_rate": lr, "max_depth": "6" if mv == "7" else "8", "n_estimators": "400"},
            "metrics": {},
        }
        ins = [_ds(LAKE_NS, LAKE_TABLE, lake_versions[day]), _ds("feast://acme-feature-store", f"{FEATURE_SET}/v{fs_version}")]
        outs = [_ds("mlflow://acme-registry", f"{MODEL}/{mv}")]
        sc.events.append(("training", _run_event("training", "START", t, "train.credit_risk", rid, ins, outs, training=dict(training))))
        done = dict(training, artifact_digest=_digest(MODEL, mv), metrics={"auc": 0.81 + 0.01 * int(mv == "8")})
        sc.events.append(("training", _run_event("training", "COMPLETE", t + timedelta(minutes=40), "train.credit_risk", rid, ins, outs, training=done)))

    sc.events.extend(_predictions(rng, predictions, t0 + timedelta(days=6)))
    for _, record in sc.events:
        record["event_id"] = _event_id(rng, record.get("eventTime") or record["event_time"])
    sc.prediction_ids = [rec["prediction_id"] for kind, rec in sc.events if kind == "inference"]
    return sc


def _predictions(rng: random.Random, n: int, t: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in range(n):
        mv = "8" if i % 5 else "7"
        score = round(rng.betavariate(2, 5), 4)
        decision = "deny" if score > 0.7 else ("review" if score > 0.5 else "approve")
        subject = f"cust-{rng.randrange(10**6):06d}"
        yield "inference", {
            "event_id": "",
            "correlation_id": None,
            "event_time": _micros(t + timedelta(seconds=i * 2)),
            "producer": "https://github.com/acme/credit-decision-api/tree/v5.2.0",
            "endpoint": ENDPOINT,
            "model_name": MODEL,
            "model_version": mv,
            "prediction_id": f"pred-{_uuid(rng)[:18]}",
            "decision_type": decision,
            "risk_score": score,
            "regulatory_class": "credit",
            "subject_id": subject,
            "training_run_id": None,
            "feature_snapshot": {
                "feature_set": {"name": FEATURE_SET, "version": "4" if mv == "8" else "3"},
                "values": {
                    "income": str(rng.randrange(18_000, 250_000)),
                    "debt_to_income": f"{rng.random():.3f}",
                    "age_band": rng.choice(["18-25", "26-35", "36-50", "51-65", "65+"]),
                    "delinquencies_24m": str(rng.randrange(0, 4)),
                    "utilisation": f"{rng.random():.3f}",
                },
            },
        }


def explorer_link(api_url: str, prediction: str) -> str:
    """The explorer's deep link to one prediction: a node id in the query string, never a key."""
    from urllib.parse import quote

    return f"{api_url.rstrip('/')}/explore?node={quote('prediction:' + prediction, safe=':')}"
