"""Pure window evaluation: which closed-window counters make which alerts (no Faust, no broker)."""
from __future__ import annotations

from lineage.graph import GraphRecord
from stream_apps.alerts.config import AlertSettings
from stream_apps.windows import CONSEQ_ALERT, SHARE_ALERT, UNKNOWN_ALERT, evaluate_windows, split_key, window_counts


def _rec(**inf: object) -> GraphRecord:
    base = {"model_name": "credit", "model_version": "7", "training_run_id": "r1", "tier": "routine",
            "lineage_complete": True, "unknown_model_version": False}
    return GraphRecord("e", "inference", 0, "c", "PREDICTION", {}, inference={**base, **inf})


def test_counters_per_record() -> None:
    assert window_counts(_rec()) == [("inf", "credit")]
    assert ("inf_missing", "credit") in window_counts(_rec(training_run_id=""))
    c = window_counts(_rec(tier="consequential", lineage_complete=False, unknown_model_version=True))
    assert ("conseq_missing", "credit") in c and ("unknown", "credit@7") in c
    assert window_counts(GraphRecord("e", "dataset", 0, "c", "START", {})) == []
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
