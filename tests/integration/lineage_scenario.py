"""A small hand-checked lineage scenario (June 2024) shared by the sink and query tests.

Sources S1 = postgres://crm:5432 crm.public.customers, S2 = s3://raw events/clicks.
ETL E1 (Jun 10, S1 v1 -> W w1), E2 (Jun 16, S1 v2 -> W w2), E3 (Jun 21, S1 v3 -> W w3),
W = warehouse://dw dw.customers.
Features F1 (Jun 11, W w1 + S2 -> customer_fs@1), F2 (Jun 17, W w2 + S2 -> customer_fs@2),
F3 (Jun 22, W with no version + S2 -> customer_fs@3; no model uses it).
Report R1 (Jun 23, W pinned at w1 -> C = warehouse://dw dw.churn_report r1).
Training T1 (Jun 12, fs@1 + W w1 -> fraud@1), T2 (Jun 18, fs@2 + W w2 -> fraud@2).
Predictions p1 (v1, Jun 13), p2 (v1, Jun 19), p3 (v2, Jun 19), p4 (v2, Jun 25), p5 (v3 unknown, Jun 26).
S2 is read at version 2024-06-01 throughout.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from factories import dataset_ref, event_uuid, feature_set, inference_record, job_ref, run_event, training_facet
from lineage.graph import GraphRecord, build_record
from sinks.base import Message
from sinks.clickhouse.client import Store
from sinks.clickhouse.writer import ClickHouseSink

S1 = ("postgres://crm:5432", "crm.public.customers")
S2 = ("s3://raw", "events/clicks")
W = ("warehouse://dw", "dw.customers")
C = ("warehouse://dw", "dw.churn_report")
RUN = {k: str(uuid.UUID(int=i + 1)) for i, k in enumerate(["E1", "E2", "F1", "F2", "T1", "T2", "E3", "F3", "R1"])}


def t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 6, day, hour, minute, tzinfo=timezone.utc)


def _ds(ns_name: tuple[str, str], version: str | None) -> dict:
    return dataset_ref(*ns_name, version)


def _run_event(n: int, etype: str, when: datetime, run: str, job: tuple[str, str], inputs: list, outputs: list, **extra: object) -> dict:
    return run_event("dataset", RUN[run], etype, event_id=event_uuid(n), eventTime=when, job=job_ref(*job),
                     inputs=inputs, outputs=outputs, **extra)


def _training(n: int, when: datetime, run: str, version: str, fs: str, w_version: str, code: str, hp: dict) -> dict:
    return _run_event(
        n, "COMPLETE", when, run, ("training", "train_fraud"), [_ds(W, w_version)], [],
        training=training_facet(
            "fraud", version, artifact_digest=f"sha256:model{version}", code_version=code,
            feature_sets=[f"customer_fs@{fs}"], dataset_digests={"warehouse://dw/dw.customers": f"sha256:{w_version}"},
            hyperparameters=hp, metrics={"auc": 0.9},
        ),
    )


def _feature(n: int, when: datetime, run: str, fs: str, w_version: str | None, features: list[str]) -> dict:
    return _run_event(
        n, "COMPLETE", when, run, ("features", "customer_features"), [_ds(W, w_version), _ds(S2, "2024-06-01")], [],
        feature_set=feature_set("customer_fs", fs, features),
    )


def _prediction(n: int, pid: str, version: str, when: datetime, complete: bool = True) -> GraphRecord:
    inference = {
        "prediction_id": pid, "model_name": "fraud", "model_version": version, "endpoint": "scoring-api",
        "decision_type": "approve", "risk_score": 0.2, "regulatory_class": "credit", "subject_ref": f"subj-{n}",
        "training_run_id": RUN.get(f"T{version}") or "", "feature_sets": [f"customer_fs@{version}"] if complete else [],
        "tier": "full", "tier_reason": "regulated", "snapshot_pointer": f"enc://snap/{pid}", "snapshot_sha256": "ab" * 32,
        "lineage_complete": complete, "unknown_model_version": not complete, "some_future_key": {"x": 1},
    }
    return inference_record(
        f"c-{pid}", inference, prediction_id=pid, event_id=event_uuid(n), event_time=when, producer="svc://scoring",
        endpoint="scoring-api", model="fraud", version=version, decision="approve", risk=0.2, regulatory_class="credit",
        training_run_id=RUN.get(f"T{version}"),
    )


def scenario_records() -> list[GraphRecord]:
    """The scenario's graph records, in emission order."""
    etl = ("etl", "build_customer_table")
    recs = [
        build_record("dataset", _run_event(1, "START", t(10, 1), "E1", etl, [_ds(S1, "v1")], [_ds(W, "w1")]), "c-e1"),
        build_record("dataset", _run_event(2, "COMPLETE", t(10, 1, 30), "E1", etl, [_ds(S1, "v1")], [_ds(W, "w1")]), "c-e1"),
        build_record("feature", _feature(3, t(11, 2), "F1", "1", "w1", ["age", "income"]), "c-f1"),
        build_record("training", _training(4, t(12, 3), "T1", "1", "1", "w1", "abc123", {"lr": "0.1", "depth": "6"}), "c-t1"),
        build_record("dataset", _run_event(5, "START", t(16, 1), "E2", etl, [_ds(S1, "v2")], [_ds(W, "w2")]), "c-e2"),
        build_record("dataset", _run_event(6, "COMPLETE", t(16, 1, 30), "E2", etl, [_ds(S1, "v2")], [_ds(W, "w2")]), "c-e2"),
        build_record("feature", _feature(7, t(17, 2), "F2", "2", "w2", ["age", "income", "tenure"]), "c-f2"),
        build_record(
            "training",
            _training(8, t(18, 3), "T2", "2", "2", "w2", "def456", {"lr": "0.05", "depth": "6", "n_estimators": "200"}),
            "c-t2",
        ),
        build_record("dataset", _run_event(9, "COMPLETE", t(21, 1), "E3", etl, [_ds(S1, "v3")], [_ds(W, "w3")]), "c-e3"),
        build_record("feature", _feature(10, t(22, 2), "F3", "3", None, ["age", "income", "tenure"]), "c-f3"),
        build_record(
            "dataset", _run_event(11, "COMPLETE", t(23, 3), "R1", ("reports", "churn_report"), [_ds(W, "w1")], [_ds(C, "r1")]),
            "c-r1",
        ),
    ]
    for n, (pid, version, when, complete) in enumerate(
        [("p1", "1", t(13, 10), True), ("p2", "1", t(19, 10), True), ("p3", "2", t(19, 12), True),
         ("p4", "2", t(25, 9), True), ("p5", "3", t(26, 9), False)],
        start=20,
    ):
        recs.append(_prediction(n, pid, version, when, complete))
    return recs


@contextmanager
def scenario_store(directory: Path) -> Iterator[Store]:
    """An embedded store in ``directory`` holding the scenario, written by the real sink; closed on exit."""
    store = Store.open(f"chdb://{directory}", "lineage")
    try:
        sink = ClickHouseSink(store, ["g"])
        for i, rec in enumerate(scenario_records()):
            sink.add(Message("g", i % 3, i // 3, rec.event_id.encode(), rec.to_bytes()))
        sink.flush()
        yield store
    finally:
        store.close()
