"""Late and out-of-order lineage on the real stack (Kafka, Redis, workers, sink, chDB).

Predictions whose model version's training events arrive in the same flush, or only after the
predictions were stored, end complete in the shipped queries and `lineage query completeness`.
The same runs sent shuffled give the same query answers as sent in order, with no dead letters."""
from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from factories import dataset_ref, inference_event, now_us, run_event, training_event, training_facet
from helpers import wait_until
from integration.sink_support import api_sql, free_port, run_cli, start_sink, stop_sink, wait_healthy
from integration.worker_support import encode_many, produce_all, read_to_end, running_workers, worker_logs
from lineage.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _completeness(s: Settings, model: str) -> dict[str, dict]:
    out = json.loads(run_cli(s, "query", "completeness", "--model", model, "--reason", "late lineage check", "--json").stdout)
    rows = out["rows"] if isinstance(out, dict) else out
    return {r["model_version"]: r for r in rows}


def _stored(s: Settings, model: str) -> list[list]:
    """What the sink stored, as consumed (no late binding)."""
    return api_sql(s, f"SELECT prediction_id, training_run_id, unknown_model_version FROM inference_lineage FINAL "
                      f"WHERE model_name = '{model}' ORDER BY prediction_id")


def _resolved(s: Settings, model: str) -> list[list]:
    return api_sql(s, f"SELECT prediction_id, training_run_id, feature_sets, unknown_model_version, lineage_complete "
                      f"FROM inference_lineage_resolved WHERE model_name = '{model}' ORDER BY prediction_id")


def test_predictions_before_their_training_lineage_end_complete(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]], tmp_path: Path
) -> None:
    s = settings_factory(api_port=free_port())
    make_topics(s)
    t = s.topics
    log = tmp_path / "sink.log"
    sink = start_sink(s, log)
    try:
        with running_workers(s):
            wait_healthy(s, sink, log)
            # (a) one flush: the predictions first, then the training event, as a backfill emits them
            same = [inference_event(f"a-{i}", subject_id=f"subj-{i}", snapshot={"f": str(i)}, model="backfill", version="7") for i in range(20)]
            train_a = training_event("backfill", "7", feature_sets=("customer_fs@3", "bureau_fs@1"))
            produce_all(s, [*((t.inference, p["prediction_id"].encode(), v, None)
                              for p, v in zip(same, encode_many(s, "inference", same))),
                            (t.training, None, encode_many(s, "training", [train_a])[0], None)])
            # (the snapshots name customer_fs@3: a prediction's feature sets are its snapshot's and its run's)
            # (b) minutes apart: the run trained the model before it served (event time), but its events
            # arrive only after the predictions were stored without lineage
            train_b = training_event("outage", "3", feature_sets=("customer_fs@2",))
            late = [inference_event(f"b-{i}", subject_id=f"subj-{i}", snapshot={"f": str(i)}, model="outage", version="3") for i in range(20)]
            produce_all(s, ((t.inference, p["prediction_id"].encode(), v, None)
                            for p, v in zip(late, encode_many(s, "inference", late))))
            wait_until(lambda: len(_stored(s, "outage")) == 20, 120, "the outage model's predictions stored")
            assert all(r[1] == "" and r[2] == 1 for r in _stored(s, "outage"))  # truly stored without lineage
            assert _completeness(s, "outage")["3"]["prediction_share"] == 0.0
            produce_all(s, [(t.training, None, encode_many(s, "training", [train_b])[0], None)])

            for model, version, train, fs, n in (("backfill", "7", train_a, ["bureau_fs@1", "customer_fs@3"], 20),
                                                 ("outage", "3", train_b, ["customer_fs@2", "customer_fs@3"], 20)):
                wait_until(lambda m=model, v=version: _completeness(s, m).get(v, {}).get("prediction_share") == 1.0,
                           120, f"completeness 1.0 for {model}@{version}")
                report = _completeness(s, model)
                assert (report[version]["predictions"], report[version]["full_lineage_predictions"]) == (n, n)
                assert report[version]["versions_with_training_lineage"] == 1
                rows = _resolved(s, model)
                assert len(rows) == n
                assert all(r[1] == train["run"]["runId"] and sorted(r[2]) == fs and r[3] == 0 and r[4] == 1
                           for r in rows), (train["run"]["runId"], rows[:2], api_sql(
                    s, f"SELECT run_id, event_type, feature_sets FROM training_runs FINAL WHERE model_name = '{model}'"))
            # what was consumed is kept as consumed: the outage rows are still stored without lineage
            assert all(r[1] == "" for r in _stored(s, "outage"))
            # the model version's provenance reaches the late training run
            pid = late[0]["prediction_id"]
            walk = json.loads(run_cli(s, "query", "prediction", pid, "--reason", "late lineage check", "--json").stdout)
            nodes = {r["node_id"] for r in (walk["rows"] if isinstance(walk, dict) else walk)}
            assert f"run:{train_b['run']['runId']}" in nodes
    except AssertionError:
        print(worker_logs(s)[-4000:], log.read_text()[-4000:])
        raise
    finally:
        stop_sink(sink)


def _runs() -> list[tuple[str, dict]]:
    """Four ETL runs and four training runs (START, RUNNING, COMPLETE each) and a prediction per
    model version, in causal order; event times ten minutes ago onwards, one second apart."""
    t0 = now_us() - 600_000_000
    events: list[tuple[str, dict]] = []
    for i in range(4):
        etl, train = str(uuid.uuid4()), str(uuid.uuid4())
        w = dataset_ref("warehouse://dw", "dw.customers", f"w{i}")
        for j, etype in enumerate(("START", "RUNNING", "COMPLETE")):
            events.append(("dataset", run_event("dataset", etl, etype, eventTime=t0 + (i * 10 + j) * 1_000_000,
                                                outputs=[w])))
        for j, etype in enumerate(("START", "RUNNING", "COMPLETE")):
            events.append(("training", run_event(
                "training", train, etype, eventTime=t0 + (i * 10 + 3 + j) * 1_000_000, inputs=[w],
                training=training_facet("shuffled", str(i), feature_sets=(f"customer_fs@{i}",)))))
        events.append(("inference", inference_event(f"s-{i}", subject_id=f"subj-{i}", snapshot={"f": str(i)},
                                                    model="shuffled", version=str(i),
                                                    event_time=t0 + (i * 10 + 7) * 1_000_000)))
    return events


def _answers(s: Settings, n_events: int) -> dict[str, object]:
    wait_until(lambda: api_sql(s, "SELECT count() FROM raw_events WHERE kind != 'alert'")[0][0] >= n_events, 120,
               "every event stored")
    return {
        "training_runs": api_sql(s, "SELECT model_version, run_id, event_type, feature_sets FROM training_runs FINAL ORDER BY ALL"),
        # a `predicted` edge records the training run known when the prediction was consumed (it
        # may be late-bound: the run is in "predictions"); every other edge names its own run
        "edges": api_sql(s, "SELECT DISTINCT src, dst, edge_type, if(edge_type = 'predicted', '', run_id) FROM edges "
                            "ORDER BY ALL"),
        "nodes": api_sql(s, "SELECT node_id, argMax(version, event_time), argMax(attributes, event_time) FROM nodes "
                            "GROUP BY node_id ORDER BY node_id"),
        "predictions": _resolved(s, "shuffled"),
        "completeness": _completeness(s, "shuffled"),
        "provenance": sorted(
            (r["depth"], r["node_id"], r["edge_type"])
            for r in _rows(run_cli(s, "query", "prediction", "s-3", "--reason", "order check", "--json").stdout)),
    }


def _rows(out: str) -> list[dict]:
    got = json.loads(out)
    return got["rows"] if isinstance(got, dict) else got


def test_shuffled_runs_give_the_same_graph_as_in_order_without_dead_letters(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]], tmp_path: Path
) -> None:
    events = _runs()
    shuffled = events[:]
    random.Random(13).shuffle(shuffled)
    assert shuffled != events
    answers = []
    for name, order in (("in-order", events), ("shuffled", shuffled)):
        s = settings_factory(api_port=free_port())
        make_topics(s)
        log = tmp_path / f"sink-{name}.log"
        sink = start_sink(s, log)
        try:
            with running_workers(s):
                wait_healthy(s, sink, log)
                items = []
                for kind, ev in order:  # keyed by event: the events of one run spread over partitions
                    items.append((s.topics.event_topics[kind], ev["event_id"].encode(), encode_many(s, kind, [ev])[0], None))
                produce_all(s, items)
                answers.append(_answers(s, len(events)))
                assert read_to_end(s, s.topics.deadletter) == []
        except AssertionError:
            print(name, worker_logs(s)[-4000:], log.read_text()[-4000:])
            raise
        finally:
            stop_sink(sink)
    in_order, mixed = answers
    for key in in_order:
        assert mixed[key] == in_order[key], key
    # the stored state of every run is its causal last state, and every prediction is complete
    assert {r[2] for r in in_order["training_runs"]} == {"COMPLETE"} and len(in_order["training_runs"]) == 4
    assert in_order["completeness"]["(all)"]["prediction_share"] == 1.0
    assert all(r[3] == 0 and r[4] == 1 for r in in_order["predictions"])


def test_the_three_alerts_fire_then_resolve_when_the_training_lineage_arrives(stack, tmp_path: Path) -> None:
    from integration.alerts_support import once_each, start_pipeline, topic_alerts

    pipeline = start_pipeline(stack, tmp_path / "alerts", window_s=10, eval_interval_s=0.5, eval_horizon_s=300,
                              resolve_after_s=5, lineage_share_min=0.95, cooldown_s=600, lag_threshold=1_000_000,
                              dlq_rate_threshold=1e9)
    pipe = next(pipeline)
    try:
        s = pipe.settings
        model = f"late-{uuid.uuid4().hex[:6]}"
        train = training_event(model, "7")  # trained before it served; its events arrive last
        preds = [inference_event(f"{model}-{i}", subject_id=f"subj-{i}", snapshot={"f": str(i)}, risk=0.95,
                                 model=model, version="7") for i in range(10)]
        produce_all(s, [(s.topics.inference, None, raw, None) for raw in encode_many(s, "inference", preds)])
        names = {"UnknownModelVersion", "ConsequentialNotCaptured", "InferenceLineageIncomplete"}

        def states(status: str) -> set[str]:
            return {a["labels"]["alertname"] for a in pipe.hook.alerts()
                    if a["labels"].get("model") == model and a["status"] == status}

        wait_until(lambda: states("firing") >= names, 90, f"the three alerts firing\n{pipe.logs()}", 0.5)
        assert not states("resolved")
        produce_all(s, [(s.topics.training, None, encode_many(s, "training", [train])[0], None)])
        wait_until(lambda: states("resolved") >= names, 90, f"the three alerts resolved\n{pipe.logs()}", 0.5)
        # each state change published once on the alerts topic
        records = [r for r in topic_alerts(s) if r.get("labels", {}).get("model") == model]
        changes = once_each(records, "alert_name", names)
        assert len(changes) == 3 and all(v == ["firing", "resolved"] for v in changes.values()), changes
    finally:
        pipeline.close()
