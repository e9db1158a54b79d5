"""One rule set, tested from both sides: the SDK's ``emit()`` refuses exactly what the worker
would dead-letter for a stateless reason, and accepts exactly what it would store."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from factories import inference_event, run_event, sdk_event, training_facet
from lineage.pii.sealing import KeyRing
from lineage.settings import ValidationSettings
from producers.config import EmitterConfig
from producers.emitter import Emitter
from producers.exceptions import InvalidEventError
from stream_apps.exceptions import Rejected
from stream_apps.validation import ValidationPolicy, validate_event

DAY_US = 86_400 * 1_000_000
BIG_FACET = '{"plan": "' + "x" * (100 << 10) + '"}'


def _now() -> int:
    return time.time_ns() // 1000


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(ev: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = ev
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    return apply


#: (case, kind, mutation, the pipeline's verdict: a dead-letter reason or None for stored)
CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], str | None]] = [
    ("valid", "dataset", lambda e: None, None),
    ("from 2020", "dataset", lambda e: e.update(eventTime=_now() - 6 * 365 * DAY_US), None),
    ("30 years old", "dataset", lambda e: e.update(eventTime=_now() - 30 * 365 * DAY_US), None),
    ("an hour ahead", "dataset", lambda e: e.update(eventTime=_now() + 3600 * 1_000_000), "time_future"),
    ("run id not a UUID", "dataset", _set("run.runId", "run-42"), "bad_id"),
    ("parent run id not a UUID", "dataset", _set("run.parentRunId", "x"), "bad_id"),
    ("no producer", "dataset", _set("producer", ""), "missing_field"),
    ("blank job name", "dataset", _set("job.name", " "), "missing_field"),
    ("input without a name", "dataset", _set("inputs.0.name", ""), "missing_field"),
    ("100 KB facet", "dataset", _set("run.facets", {"spark.logicalPlan": BIG_FACET}), None),
    ("facet not an object", "dataset", _set("job.facets", {"odd": "[1]"}), None),
    ("feature set without version", "feature", _set("feature_set.version", ""), "missing_field"),
    ("training COMPLETE without digest", "training", _set("training.artifact_digest", None), None),
    ("training without model version", "training", _set("training.model_version", ""), "missing_field"),
    ("prediction", "inference", lambda e: None, None),
    ("risk score 1.5", "inference", _set("risk_score", 1.5), "out_of_range"),
    ("prediction id with a space", "inference", _set("prediction_id", "p 1"), "bad_id"),
    ("no subject", "inference", _set("subject_id", ""), "missing_field"),
    ("no decision type", "inference", _set("decision_type", ""), "missing_field"),
    ("inference from 2021", "inference", lambda e: e.update(event_time=_now() - 5 * 365 * DAY_US), None),
    ("too many snapshot values", "inference",
     _set("feature_snapshot", {"feature_set": None, "values": {str(i): "1" for i in range(2001)}}), "oversize"),
]


def _event(kind: str) -> dict[str, Any]:
    if kind == "inference":
        return inference_event(snapshot={"income": "1"})
    if kind == "training":
        return run_event("training", training=training_facet(artifact_digest="sha256:00"))
    return run_event(kind)


def _pipeline_verdict(kind: str, ev: dict[str, Any], policy: ValidationPolicy) -> str | None:
    ev = copy.deepcopy(ev)
    subject = snapshot = None
    if kind == "inference":
        subject, snapshot = ev.pop("subject_id"), ev.pop("feature_snapshot")
    try:
        validate_event(kind, ev, _now(), policy, subject, snapshot)
    except Rejected as exc:
        return exc.reason
    return None


@pytest.fixture()
def emitter(tmp_path: Path) -> Iterator[Emitter]:
    ring = KeyRing.under(tmp_path / "keys")
    ring.ensure()
    em = Emitter(EmitterConfig(bootstrap_servers="127.0.0.1:1", spool_dir=tmp_path / "spool", metrics_interval_s=0,
                               seal_public_key=ring.published()), "parity")
    yield em
    em.close(timeout=0)


def _sdk_verdict(em: Emitter, kind: str, ev: dict[str, Any]) -> str | None:
    try:
        em.emit_record(kind, copy.deepcopy(ev))
    except InvalidEventError as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(("case", "kind", "mutate", "verdict"), CASES, ids=[c[0] for c in CASES])
def test_the_sdk_and_the_pipeline_give_the_same_verdict(
    emitter: Emitter, case: str, kind: str, mutate: Callable[[dict[str, Any]], None], verdict: str | None
) -> None:
    ev = _event(kind)
    mutate(ev)
    assert _pipeline_verdict(kind, ev, ValidationPolicy()) == verdict
    appended = emitter.spool.appended
    assert _sdk_verdict(emitter, kind, ev) == verdict
    assert emitter.spool.appended == appended + (verdict is None)  # refused: nothing reaches the spool


def test_the_sdk_follows_the_configured_limits(tmp_path: Path) -> None:
    limits = ValidationSettings(max_past_days=30, max_future_s=10)
    em = Emitter(EmitterConfig(bootstrap_servers="127.0.0.1:1", spool_dir=tmp_path / "spool", metrics_interval_s=0,
                               validation=limits), "limits")
    try:
        old = run_event(eventTime=_now() - 31 * DAY_US)
        assert _pipeline_verdict("dataset", old, ValidationPolicy.from_settings(limits)) == "time_past"
        assert _sdk_verdict(em, "dataset", old) == "time_past"
        soon = run_event(eventTime=_now() + 60 * 1_000_000)
        assert _sdk_verdict(em, "dataset", soon) == "time_future"
    finally:
        em.close(timeout=0)


def test_typed_events_are_checked_at_emit(emitter: Emitter) -> None:
    from producers import events as ev

    with pytest.raises(InvalidEventError) as info:
        emitter.emit(sdk_event("dataset", run=ev.Run("not-a-uuid")))
    assert info.value.reason == "bad_id"
    with pytest.raises(InvalidEventError) as info:
        emitter.emit(sdk_event("dataset", eventTime=_now() + 3600 * 1_000_000))
    assert info.value.reason == "time_future"
    emitter.emit(sdk_event("dataset", eventTime=_now() - 6 * 365 * DAY_US))  # history is accepted


def test_check_reports_what_the_stored_record_will_lack(emitter: Emitter) -> None:
    ev = run_event("training", training=training_facet(artifact_digest=None))
    ev["run"]["facets"] = {"spark.logicalPlan": BIG_FACET}
    found = emitter.check(("training", ev))
    assert found.incomplete == ["training.artifact_digest"]
    assert [(d.where, d.name, d.why) for d in found.dropped] == [("run", "spark.logicalPlan", "over_limit")]


def test_check_refuses_an_encoded_event_over_the_message_limit(tmp_path: Path) -> None:
    em = Emitter(EmitterConfig(bootstrap_servers="127.0.0.1:1", spool_dir=tmp_path / "spool", metrics_interval_s=0,
                               validation=ValidationSettings(max_message_bytes=4096)), "small")
    try:
        ev = run_event(inputs=[{"namespace": "s3://b", "name": f"orders/part-{i:05d}.parquet", "version": None, "facets": {}} for i in range(400)])
        with pytest.raises(InvalidEventError) as info:
            em.check(("dataset", ev))
        assert info.value.reason == "oversize"
    finally:
        em.close(timeout=0)
