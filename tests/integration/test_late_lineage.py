"""Late training lineage on the real stack (Kafka, Redis, workers, sink, chDB): predictions whose
model version's training events arrive in the same flush, or only after the predictions were
stored, end complete in every shipped query and in `lineage query completeness`."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from factories import inference_event, training_event
from helpers import wait_until
from integration.sink_support import api_sql, free_port, run_cli, start_sink, stop_sink, wait_healthy
from integration.worker_support import encode_many, produce_all, running_workers, worker_logs
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
