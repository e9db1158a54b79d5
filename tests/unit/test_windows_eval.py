"""Pure window evaluation: which closed-window counters make which alerts (no Faust, no broker)."""
from __future__ import annotations

from lineage_native import window_facts
from stream_apps.alerts.completeness import (
    CONSEQ_ALERT,
    SHARE_ALERT,
    UNKNOWN_ALERT,
    InferenceFacts,
    evaluate_windows,
    split_key,
    window_counts,
)
from stream_apps.alerts.config import AlertSettings


def _rec(**inf: object) -> InferenceFacts:
    """The facts of a prediction of credit@7 whose worker row (joined, routine) is overridden by
    ``inf``, as the compiled core hands them over."""
    base = {"model_name": "credit", "model_version": "7", "training_run_id": "r1", "tier": "routine",
            "lineage_complete": True, "unknown_model_version": False}
    facts = window_facts("inference", {"event_id": "e", "event_time": 1_760_000_000_000_000}, {**base, **inf})
    assert facts[:3] == ("inference", 1_760_000_000_000_000, "PREDICTION") and facts[7] is not None
    return facts[7]


def test_counters_per_record() -> None:
    assert window_counts(_rec()) == [("inf", "credit")]
    assert ("inf_missing", "credit") in window_counts(_rec(model_version="", training_run_id=""))
    # no training run yet: counted per version, so lineage arriving later can settle it
    assert ("inf_unbound", "credit@7") in window_counts(_rec(training_run_id=""))
    c = window_counts(_rec(tier="consequential", lineage_complete=False, unknown_model_version=True,
                           training_run_id="", snapshot_pointer="seg/1"))
    assert ("conseq_unbound", "credit@7") in c and ("unknown", "credit@7") in c
    # a consequential prediction without its stored snapshot stays missing whatever arrives later
    c = window_counts(_rec(tier="consequential", lineage_complete=False, unknown_model_version=True, training_run_id=""))
    assert ("conseq_missing", "credit") in c
    # a run event carries no prediction facts: it counts nothing
    assert window_facts("dataset", {"eventType": "START", "run": {"runId": "r"}, "job": {}})[7] is None
    assert split_key("unknown|credit@7|3") == ("unknown", "credit@7", 3)


def test_share_threshold_consequential_and_unknown() -> None:
    cfg = AlertSettings()
    ok = {("inf", "a"): 100, ("inf_missing", "a"): 5}
    bad = {("inf", "b"): 100, ("inf_missing", "b"): 6, ("conseq", "b"): 3, ("conseq_missing", "b"): 1,
           ("unknown", "b@9"): 2}
    alerts = evaluate_windows({(0.0, 60.0): {**ok, **bad}}, cfg)
    by = {(a.name, a.labels.get("model")) for a in alerts}
    assert by == {(SHARE_ALERT, "b"), (CONSEQ_ALERT, "b"), (UNKNOWN_ALERT, "b")}
    share = next(a for a in alerts if a.name == SHARE_ALERT)
    assert "model b" in share.summary and "6.0%" in share.summary
    unknown = next(a for a in alerts if a.name == UNKNOWN_ALERT)
    assert unknown.labels == {"model": "b", "model_version": "9"}


def test_same_alert_from_several_windows_is_one() -> None:
    w = {("inf", "m"): 1, ("unknown", "m@1"): 1}
    alerts = evaluate_windows({(0.0, 10.0): w, (10.0, 20.0): w}, AlertSettings())
    assert [a.name for a in alerts].count(UNKNOWN_ALERT) == 1


def test_min_window_events() -> None:
    cfg = AlertSettings(min_window_events=10)
    assert evaluate_windows({(0.0, 1.0): {("inf", "m"): 3, ("inf_missing", "m"): 3}}, cfg) == []


def test_window_figures_are_per_model_and_stamped_with_the_window_end() -> None:
    from stream_apps.alerts.completeness import window_stat_points

    points = window_stat_points({(0.0, 60.0): {("inf", "a"): 200, ("inf_missing", "a"): 12, ("conseq", "a"): 4,
                                                ("conseq_missing", "a"): 1, ("unknown", "a@9"): 12}})
    got = {name: (labels, ts, value) for name, labels, ts, value in points}
    assert got == {
        "inference_window_events": ({"model": "a"}, 60.0, 200.0),
        "inference_window_lineage_share": ({"model": "a"}, 60.0, 0.94),
        "consequential_window_events": ({"model": "a"}, 60.0, 4.0),
        "consequential_window_uncaptured": ({"model": "a"}, 60.0, 1.0),
    }


def test_heartbeat_silence_is_measured_from_last_seen_else_from_the_baseline() -> None:
    from stream_apps.alerts.completeness import SILENT_ALERT, heartbeat_alerts

    now = 1_000.0
    firing = heartbeat_alerts(
        ["alive", "quiet", "never", "new"],
        [int(995e6), int(600e6), None, None],
        [int(100e6), int(100e6), int(500e6), int(990e6)],
        now, 300.0)
    assert {a.labels["emitter"] for a in firing} == {"quiet", "never"}
    assert all(a.name == SILENT_ALERT for a in firing)
    quiet = next(a for a in firing if a.labels["emitter"] == "quiet")
    assert quiet.value == 400.0 and "sent nothing for 400s" in quiet.summary
    assert heartbeat_alerts(["x"], [None], [None], now, 300.0) == []  # not even a baseline yet


def test_late_training_lineage_settles_a_windows_alerts_and_figures() -> None:
    from stream_apps.alerts.completeness import window_stat_points

    w = {(0.0, 60.0): {("inf", "m"): 100, ("inf_unbound", "m@7"): 80, ("inf_unbound", "m@8"): 1, ("conseq", "m"): 2,
                       ("conseq_unbound", "m@7"): 2, ("unknown", "m@7"): 80, ("unknown", "m@8"): 1}}
    before = evaluate_windows(w, AlertSettings())
    assert {(a.name, a.labels.get("model_version")) for a in before} == {
        (SHARE_ALERT, None), (CONSEQ_ALERT, None), (UNKNOWN_ALERT, "7"), (UNKNOWN_ALERT, "8")}
    after = evaluate_windows(w, AlertSettings(), known=lambda key: key == "m@7")  # m@7's training run arrived
    assert {(a.name, a.labels.get("model_version")) for a in after} == {(UNKNOWN_ALERT, "8")}
    figures = {name: value for name, _, _, value in window_stat_points(w, lambda key: key == "m@7")}
    assert figures["inference_window_lineage_share"] == 0.99 and figures["consequential_window_uncaptured"] == 0.0
    assert {name: value for name, _, _, value in window_stat_points(w)}["inference_window_lineage_share"] == 0.19


def test_window_figures_are_published_again_when_late_lineage_changes_them() -> None:
    from stream_apps.detectors import WindowStatLog

    w = {(0.0, 60.0): {("inf", "m"): 4, ("inf_unbound", "m@7"): 4}}
    log = WindowStatLog(3600.0)
    known: set[str] = set()
    first = log.fresh(w, 100.0, known.__contains__)
    assert ("inference_window_lineage_share", {"model": "m"}, 60.0, 0.0) in first
    assert log.fresh(w, 101.0, known.__contains__) == []  # unchanged: not published again
    known.add("m@7")
    again = log.fresh(w, 102.0, known.__contains__)
    assert [p for p in again if p[0] == "inference_window_lineage_share"] == [
        ("inference_window_lineage_share", {"model": "m"}, 60.0, 1.0)]
