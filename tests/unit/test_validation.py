"""Semantic validation: every reason code is reachable and valid events pass (pure, injected clock)."""
from __future__ import annotations

import hashlib

import orjson
import pytest

from factories import inference_event, run_event, training_facet, without_pii
from lineage.deadletters import dead_letter_headers
from lineage.settings import ValidationSettings
from stream_apps.exceptions import Rejected
from stream_apps.validation import REASONS, ValidationPolicy, check_size, validate_event
from stream_apps.enrichment import correlation_id, merge_lineage, training_lineage

NOW = 1_750_000_000_000_000
P = ValidationPolicy()


def run_ev(kind: str = "dataset", **over: object) -> dict:
    """A START run event at the test clock with a JSON run facet; a training run without an
    artifact digest (required only on COMPLETE) of model ``m@1``."""
    parts: dict[str, object] = {}
    if kind == "training":
        parts["training"] = training_facet("m", "1", artifact_digest=None, code_version="c", feature_sets=())
    return run_event(kind, None, "START", run_facets={"nominalTime": '{"a": 1}'}, **{"eventTime": NOW, **parts, **over})


def inf_ev(**over: object) -> dict:
    """An inference event at the test clock as validated: subject and snapshot split off."""
    fields = {"prediction_id": "pred-1", "event_time": NOW, **over}
    return without_pii(inference_event(risk=0.2, model="m", version="1", **fields))


def reason_of(kind: str, ev: dict, subject: object = "s1", snapshot: dict | None = None) -> str:
    with pytest.raises(Rejected) as info:
        validate_event(kind, ev, NOW, P, subject, snapshot)
    assert info.value.reason in REASONS
    return info.value.reason


@pytest.mark.parametrize("kind", ["dataset", "feature", "training"])
def test_valid_run_events_pass(kind: str) -> None:
    validate_event(kind, run_ev(kind), NOW, P)


def test_valid_inference_passes() -> None:
    validate_event("inference", inf_ev(), NOW, P, "s1", {"feature_set": None, "values": {"a": "1"}})


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.update(event_id="not-a-uuid"), "bad_id"),
        (lambda e: e["run"].update(runId="123"), "bad_id"),
        (lambda e: e["run"].update(parentRunId="x"), "bad_id"),
        (lambda e: e["job"].update(name=" "), "missing_field"),
        (lambda e: e.update(producer=""), "missing_field"),
        (lambda e: e["inputs"][0].update(name=""), "missing_field"),
        (lambda e: e.update(eventTime=NOW + 3600 * 1_000_000), "time_future"),
    ],
)
def test_run_event_rejections(mutate, reason: str) -> None:
    ev = run_ev()
    mutate(ev)
    assert reason_of("dataset", ev) == reason


def test_class_specific_required_fields() -> None:
    fe = run_ev("feature")
    fe["feature_set"]["version"] = ""
    assert reason_of("feature", fe) == "missing_field"
    tr = run_ev("training", eventType="COMPLETE")
    tr["training"]["model_version"] = ""
    assert reason_of("training", tr) == "missing_field"  # names the model version node: essential


@pytest.mark.parametrize(
    ("over", "subject", "snapshot", "reason"),
    [
        ({"risk_score": 1.5}, "s", None, "out_of_range"),
        ({"risk_score": float("nan")}, "s", None, "out_of_range"),
        ({"prediction_id": "has space"}, "s", None, "bad_id"),
        ({"prediction_id": ""}, "s", None, "bad_id"),
        ({"model_version": ""}, "s", None, "missing_field"),
        ({}, "", None, "missing_field"),
        ({"event_time": NOW + 10**12}, "s", None, "time_future"),
        ({}, "s", {"feature_set": None, "values": {str(i): "1" for i in range(P.max_snapshot_values + 1)}}, "oversize"),
    ],
)
def test_inference_rejections(over: dict, subject: str, snapshot: dict | None, reason: str) -> None:
    assert reason_of("inference", inf_ev(**over), subject, snapshot) == reason


def test_reason_text_never_contains_the_subject() -> None:
    with pytest.raises(Rejected) as info:
        validate_event("inference", inf_ev(risk_score=2.0), NOW, P, "alice-secret", None)
    assert "alice-secret" not in str(info.value)


def test_size_limit() -> None:
    check_size(b"x" * P.max_message_bytes, P)
    with pytest.raises(Rejected, match="oversize"):
        check_size(b"x" * (P.max_message_bytes + 1), P)


def test_dead_letter_headers_keep_originals_and_add_reason() -> None:
    h = dict(dead_letter_headers([("a", b"1"), ("dlq.reason", b"old")], "bad_id", "why", "t", 2, 40, now_ms=5))
    assert h == {"a": b"1", "dlq.reason": b"bad_id", "dlq.detail": b"why", "dlq.topic": b"t",
                 "dlq.partition": b"2", "dlq.offset": b"40", "dlq.ts": b"5"}


def test_correlation_id_precedence_and_determinism() -> None:
    ev = run_ev()
    derived, src = correlation_id("dataset", ev, [])
    assert src == "derived" and correlation_id("dataset", ev, []) == (derived, "derived")
    child = run_ev()
    child["run"]["parentRunId"] = ev["run"]["runId"]
    assert correlation_id("dataset", child, [])[0] == derived  # same flow: the root run
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert correlation_id("dataset", ev, [("traceparent", tp.encode())]) == ("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "traceparent")
    assert correlation_id("dataset", ev, [("traceparent", tp.encode()), ("correlation_id", b"c-1")]) == ("c-1", "header")
    inf = inf_ev()
    assert correlation_id("inference", inf, [])[0] == correlation_id("inference", dict(inf), [])[0]


def test_training_lineage_entry_and_merge() -> None:
    tr = run_ev("training", eventType="COMPLETE")
    tr["training"]["feature_sets"] = [{"name": "b", "version": "2"}, {"name": "a", "version": "1"}]
    key, entry = training_lineage(tr)
    assert key == "m@1" and entry["feature_sets"] == ["a@1", "b@2"] and entry["training_run_id"] == tr["run"]["runId"]
    late_start = {**entry, "state": "START"}
    assert merge_lineage(entry, late_start)["state"] == "COMPLETE"
    assert training_lineage(run_ev("training", eventType="FAIL")) is None


def test_graph_records_round_trip_through_the_wire_format() -> None:
    """What the worker publishes is what the sink reads back: every field, nodes and edges included."""
    from lineage.graph import GraphRecord, build_record

    tr = run_ev("training", eventType="COMPLETE")
    tr["training"]["feature_sets"] = [{"name": "a", "version": "1"}]
    inf = inf_ev(subject_ref="r", training_run_id="t")
    for kind, ev, extra in (("training", tr, None), ("dataset", run_ev(), None),
                            ("inference", inf, {"tier": "sampled", "feature_sets": ["a@1"], "risk_score": 0.5})):
        record = build_record(kind, ev, "corr", extra)
        back = GraphRecord.from_bytes(record.to_bytes())
        assert back.nodes == record.nodes and back.edges == record.edges
        assert (back.event_id, back.kind, back.event_time, back.correlation_id) == (
            record.event_id, record.kind, record.event_time, record.correlation_id)
        assert back.inference == record.inference


DAY_US = 86_400 * 1_000_000


@pytest.mark.parametrize("years", [1, 6, 30])
def test_any_event_age_is_accepted_by_default(years: int) -> None:
    ev = run_ev(eventTime=NOW - years * 365 * DAY_US)
    assert not validate_event("dataset", ev, NOW, P)


def test_the_past_limit_is_a_setting() -> None:
    limits = ValidationPolicy.from_settings(ValidationSettings(max_past_days=400))
    validate_event("dataset", run_ev(eventTime=NOW - 399 * DAY_US), NOW, limits)
    with pytest.raises(Rejected) as info:
        validate_event("dataset", run_ev(eventTime=NOW - 401 * DAY_US), NOW, limits)
    assert info.value.reason == "time_past" and "401 days" in info.value.detail


def test_every_limit_comes_from_settings() -> None:
    v = ValidationSettings(max_future_s=10, max_message_bytes=2048, max_facet_bytes=100, max_snapshot_values=3)
    limits = ValidationPolicy.from_settings(v)
    assert (limits.max_future_us, limits.max_message_bytes, limits.max_facet_bytes, limits.max_snapshot_values,
            limits.max_past_us) == (10_000_000, 2048, 100, 3, None)
    assert reason_of_with(limits, "dataset", run_ev(eventTime=NOW + 11_000_000)) == "time_future"
    validate_event("dataset", run_ev(eventTime=NOW + 9_000_000), NOW, limits)
    snap = {"feature_set": None, "values": {str(i): "1" for i in range(4)}}
    assert reason_of_with(limits, "inference", inf_ev(), "s1", snap) == "oversize"
    with pytest.raises(Rejected):
        check_size(b"x" * 2049, limits)


def reason_of_with(limits: ValidationPolicy, kind: str, ev: dict, subject: object = "s1", snapshot: dict | None = None) -> str:
    with pytest.raises(Rejected) as info:
        validate_event(kind, ev, NOW, limits, subject, snapshot)
    return info.value.reason


def test_an_oversized_facet_is_dropped_with_a_note_and_the_lineage_kept() -> None:
    big = '{"plan": "' + "x" * (100 << 10) + '"}'
    ev = run_ev()
    ev["run"]["facets"]["spark.logicalPlan"] = big
    ev["inputs"][0]["facets"] = {"schema": '{"fields": []}', "huge": big}
    inputs_before = [(d["namespace"], d["name"]) for d in ev["inputs"]]
    found = validate_event("dataset", ev, NOW, P)
    assert "spark.logicalPlan" not in ev["run"]["facets"] and "nominalTime" in ev["run"]["facets"]
    assert ev["inputs"][0]["facets"] == {"schema": '{"fields": []}'}
    assert [(d["namespace"], d["name"]) for d in ev["inputs"]] == inputs_before
    digest = hashlib.sha256(big.encode()).hexdigest()
    assert ev["quality"]["dropped_facets"] == [
        {"where": "run", "name": "spark.logicalPlan", "bytes": len(big), "sha256": digest, "why": "over_limit"},
        {"where": "inputs[0]", "name": "huge", "bytes": len(big), "sha256": digest, "why": "over_limit"},
    ]
    assert [d.name for d in found.dropped] == ["spark.logicalPlan", "huge"]
    from lineage.graph import build_record

    run_node = next(n for n in build_record("dataset", ev, "c").nodes if n.node_type == "run")
    assert orjson.loads(run_node.attributes["dropped_facets"])[0]["sha256"] == digest


@pytest.mark.parametrize("value", ["{nope", "[1, 2]", '"text"'])
def test_a_facet_that_is_not_an_object_is_dropped_with_a_note(value: str) -> None:
    ev = run_ev()
    ev["job"]["facets"]["odd"] = value
    validate_event("dataset", ev, NOW, P)
    assert "odd" not in ev["job"]["facets"]
    assert ev["quality"]["dropped_facets"][0]["why"] == "not_an_object"


def test_a_missing_recommended_field_flags_the_record_incomplete() -> None:
    tr = run_ev("training", eventType="COMPLETE")  # no artifact digest
    found = validate_event("training", tr, NOW, P)
    assert found.incomplete == ["training.artifact_digest"] and tr["quality"]["incomplete"] == found.incomplete
    from lineage.graph import build_record

    nodes = {n.node_type: n for n in build_record("training", tr, "c").nodes}
    assert nodes["model_version"].attributes["incomplete"] == "training.artifact_digest"
    assert nodes["run"].attributes["incomplete"] == "training.artifact_digest"
    assert training_lineage(tr) is not None  # the model keeps its training lineage
    complete = run_ev("training", eventType="COMPLETE")
    complete["training"]["artifact_digest"] = "sha256:00"
    assert not validate_event("training", complete, NOW, P) and "quality" not in complete
    assert "incomplete" not in next(n for n in build_record("training", complete, "c").nodes if n.node_type == "run").attributes
