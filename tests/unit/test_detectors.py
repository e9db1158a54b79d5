"""Completeness detection state (stream_apps.detectors) with plain dicts for the Faust tables."""
from __future__ import annotations

from typing import Any

from lineage.settings import AlertSettings
from lineage_native import window_facts
from stream_apps.alerts.completeness import RUN_ALERT, count_key
from stream_apps.alerts.feed import RunEvent, run_event
from stream_apps.detectors import (
    ClosedWindows,
    HeartbeatThrottle,
    PurgeSchedule,
    RunEnd,
    RunTracker,
    StreamStats,
    StreamUpdate,
    WindowStatLog,
)

CFG = AlertSettings(run_deadline_s=600.0, window_s=60.0, window_grace_s=2.0, window_retention_s=3600.0,
                    eval_interval_s=1.0)
T0 = 1_760_000_000.0


def run_rec(event_type: str, run_id: str = "r-1", t: float = T0, kind: str = "dataset") -> RunEvent:
    return RunEvent(run_id, event_type, int(t * 1e6), "etl/orders", kind, False)


def facts_run(kind: str, event: dict[str, Any]) -> RunEvent:
    """The run event the compiled core's facts of ``event`` describe."""
    run = run_event(window_facts(kind, event))
    assert run is not None
    return run


def test_purge_schedule_hands_out_keys_at_most_once_per_interval() -> None:
    purges = PurgeSchedule(every_s=5.0)
    purges.add(1, "a")
    assert purges.due(1, T0) == ["a"]
    purges.add(1, "b")
    assert purges.due(1, T0 + 5.0) == []  # not yet: the interval restarted at T0
    assert purges.due(1, T0 + 5.1) == ["b"]
    assert purges.due(2, T0) == []


def test_run_tracker_opens_on_start_and_closes_on_a_terminal_event() -> None:
    table: dict[str, Any] = {}
    runs = RunTracker(table, table, CFG)
    assert runs.observe(run_rec("START"), partition=3) is None
    assert table == {"r-1|3": {"t": int(T0 * 1e6), "job": "etl/orders", "kind": "dataset"}}
    assert runs.observe(run_rec("START", t=T0 + 5), partition=3) is None
    assert table["r-1|3"]["t"] == int(T0 * 1e6)  # the first START stays
    assert runs.observe(run_rec("RUNNING"), partition=3) is None
    assert runs.observe(run_rec("START", run_id=""), partition=3) is None  # no run id: nothing to track

    end = runs.observe(run_rec("COMPLETE"), partition=3)
    assert end == RunEnd("r-1", "COMPLETE", "r-1|3")
    assert "r-1|3" in table  # removed only once the caller recorded the end
    runs.ended(end)
    assert table == {}
    runs.ended(end)  # idempotent
    assert runs.end_ttl_s == 86_400


def test_overdue_runs_fire_or_resolve_by_their_recorded_end() -> None:
    table: dict[str, Any] = {}
    runs = RunTracker(table, table, CFG)
    runs.observe(run_rec("START", "late"), 1)
    runs.observe(run_rec("START", "ended"), 1)
    runs.observe(run_rec("START", "fresh", t=T0 + 500), 1)
    runs.observe(run_rec("START", "standby"), 2)
    now = T0 + 600

    overdue = runs.overdue(now, mine={1})
    assert sorted(k for k, _ in overdue) == ["ended|1", "late|1"]
    ends = [b"COMPLETE" if k.startswith("ended") else None for k, _ in overdue]
    firing, resolved = runs.settle(overdue, ends, now)
    assert [(a.name, a.labels) for a in firing] == [(RUN_ALERT, {"job": "etl/orders", "run_id": "late"})]
    assert [a.labels["run_id"] for a in resolved] == ["ended"]

    runs.purge(1, now)  # the ended run leaves the table in its partition's event context
    assert "ended|1" not in table and "late|1" in table


def test_heartbeat_written_at_most_once_a_second_per_emitter() -> None:
    beats = HeartbeatThrottle()
    assert beats.due("https://etl", T0)
    assert not beats.due("https://etl", T0 + 0.5)
    assert beats.due("https://scoring", T0 + 0.5)
    assert beats.due("https://etl", T0 + 1.0)
    assert not beats.due("", T0)


def test_closed_windows_sum_owned_partitions_within_the_horizon() -> None:
    def key(metric: str, label: str, part: int, start: float) -> tuple[str, tuple[float, float]]:
        return count_key(metric, label, part), (start, start + 60)

    now = T0 + 120
    store: dict[Any, int] = {
        key("inf", "credit", 0, T0): 3,
        key("inf", "credit", 1, T0): 4,
        key("inf_missing", "credit", 1, T0): 1,
        key("inf", "credit", 2, T0): 100,  # a standby copy
        key("inf", "credit", 0, T0 + 60): 9,  # closes at now, still in grace
        key("inf", "credit", 0, T0 - 600): 5,  # past the horizon
        key("inf", "credit", 0, T0 - 7200): 5,  # past retention: scheduled for deletion
        ("not-a-window-key", None): 1,
    }
    windows = ClosedWindows(store, store, CFG)
    closed = windows.collect(now, mine={0, 1})
    assert {w: dict(c) for w, c in closed.items()} == {(T0, T0 + 60): {("inf", "credit"): 7, ("inf_missing", "credit"): 1}}

    windows.purge(0, now)
    assert key("inf", "credit", 0, T0 - 7200) not in store and key("inf", "credit", 0, T0 - 600) in store


def test_window_stats_published_once_and_again_when_a_late_count_changes_them() -> None:
    log = WindowStatLog(retention_s=3600)
    window = {(T0, T0 + 60): {("inf", "credit"): 10, ("inf_missing", "credit"): 1}}
    first = log.fresh(window, T0 + 70)
    assert {(name, value) for name, _, _, value in first} >= {("inference_window_events", 10.0),
                                                               ("inference_window_lineage_share", 0.9)}
    assert log.fresh(window, T0 + 71) == []
    late = {(T0, T0 + 60): {("inf", "credit"): 11, ("inf_missing", "credit"): 1}}
    assert {name for name, _, _, _ in log.fresh(late, T0 + 72)} == {"inference_window_events",
                                                                    "inference_window_lineage_share"}
    log.fresh({}, T0 + 60 + 3601)
    assert log.published == {}


def test_stream_stats_sample_and_restart() -> None:
    stats = StreamStats("host:1")
    stats.observe({"inference": 3}, {"consequential": 3}, [1.0, 2.0, 3.0])
    stats.observe({"inference": 1, "dataset": 1}, {"consequential": 1}, [4.0, 0.0])
    stats.decode_error()
    points = {(name, tuple(sorted(labels.items()))): value for name, labels, _, value in stats.sample(T0)}
    assert points[("e2e_latency_seconds", (("quantile", "0.5"), ("worker", "host:1")))] == 2.0  # of 0, 1, 2, 3, 4
    assert points[("e2e_latency_seconds", (("quantile", "0.99"), ("worker", "host:1")))] == 4.0
    assert points[("sampling_tier_events", (("tier", "consequential"), ("worker", "host:1")))] == 4.0
    assert points[("graph_events", (("kind", "inference"), ("worker", "host:1")))] == 4.0
    assert points[("graph_events", (("kind", "dataset"), ("worker", "host:1")))] == 1.0
    assert points[("window_feed_decode_errors", (("worker", "host:1"),))] == 1.0
    assert stats.sample(T0 + 5) == []


def test_a_streaming_run_is_not_awaited_to_end_but_watched_for_updates() -> None:
    """Flink/Spark streaming jobs (jobType.processingType = STREAMING) send START and then RUNNING
    for as long as they run: the run deadline never fires on them; StreamingRunStalled fires when
    their updates stop for ``streaming_stall_s``, and not while they keep coming."""
    import json
    from pathlib import Path

    from producers.openlineage import from_openlineage
    from stream_apps.alerts.completeness import STREAM_ALERT

    flink = json.loads((Path(__file__).resolve().parents[1] / "data" / "openlineage" / "flink_streaming_running.json").read_text())
    cfg = AlertSettings(run_deadline_s=600.0, streaming_stall_s=300.0)
    table: dict = {}
    runs = RunTracker(table, table, cfg)
    key = f"{flink['run']['runId']}|0"
    t0 = None
    for i, event_type in enumerate(("START", "RUNNING", "RUNNING")):
        kind, rec = from_openlineage({**flink, "eventType": event_type})
        record = facts_run(kind, rec)
        assert record.streaming and record.job == f"{flink['job']['namespace']}/{flink['job']['name']}"
        record = record._replace(event_time=record.event_time + i * 60_000_000)
        update = runs.observe(record, partition=0)
        assert update == StreamUpdate(flink["run"]["runId"], record.event_time)  # for the caller to record in Redis
        t0 = record.event_time
    assert table[key]["streaming"] is True and table[key]["t"] == t0  # the latest update
    last = t0 / 1e6
    assert runs.overdue(last + 299, mine={0}) == []  # updates came within the stall window
    overdue = runs.overdue(last + 301, mine={0})
    firing, resolved = runs.settle(overdue, [None], last + 301)
    assert [(a.name, a.labels["run_id"]) for a in firing] == [(STREAM_ALERT, flink["run"]["runId"])] and not resolved
    assert "sent no update since" in firing[0].summary
    # an update that landed on another partition (another worker's table) counts too
    firing, _ = runs.settle(overdue, [None], last + 301, seen=[float(t0 + 200_000_000)])
    assert firing == []
    # a RUNNING without the job facet still counts as an update of the known streaming run
    bare = {**flink, "eventType": "RUNNING", "job": {**flink["job"], "facets": {}}}
    kind, rec = from_openlineage(bare)
    later = facts_run(kind, rec)
    assert not later.streaming
    later = later._replace(event_time=int((last + 400) * 1e6))
    runs.observe(later, partition=0)
    assert runs.overdue(last + 600, mine={0}) == [] and table[key]["t"] == later.event_time

    batch = {**flink, "eventType": "START", "run": {**flink["run"], "runId": "0190a1b2-c3d4-7e5f-8a9b-000000000099"},
             "job": {**flink["job"], "facets": {}}}  # no jobType: a batch run, awaited to end
    kind, rec = from_openlineage(batch)
    runs.observe(facts_run(kind, rec), partition=0)
    assert table["0190a1b2-c3d4-7e5f-8a9b-000000000099|0"].get("streaming") is None