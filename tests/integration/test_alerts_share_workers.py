"""The per-model share of inference events lacking required lineage is exact with two workers.

Each model's predictions are spread over all six inference partitions, so over both workers'
event paths. Two models in one window:

* ``over``: 200 predictions, 12 without lineage (6%), spread everywhere -> fires once, and the
  alert names all 200 events (one evaluator saw the whole model);
* ``under``: 200 predictions, 8 without lineage (4%), all 8 on inference partition 0 -> never
  fires. Counted per worker it would: the event path owning partition 0 sees about 8 of 100 (the
  test checks that from the real assignment), which is what keying the window feed by model fixes.

The figures published for the window (one series per model, ClickHouse ``pipeline_metrics``)
are the exact ones: 200 events and shares 0.94 / 0.96.
"""
from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers import wait_until
from integration.alerts_support import (
    Pipeline,
    group_assignment,
    http_json,
    start_pipeline,
    windows_caught_up,
    worker_proc,
)
from factories import inference_event, training_event
from integration.worker_support import encode_many, produce_all, read_to_end
from lineage.topics import window_counts_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 30
PER_MODEL = 200
MISSING = {"over": 12, "under": 8}
PARTITIONS = 6


@pytest.fixture(scope="module")
def pipe(stack, tmp_path_factory) -> Iterator[Pipeline]:
    yield from start_pipeline(
        stack, Path(tmp_path_factory.mktemp("sw")),
        window_s=WINDOW, eval_interval_s=0.5, eval_horizon_s=4 * WINDOW, lineage_share_min=0.95,
        sample_interval_s=2, cooldown_s=300, lag_threshold=1_000_000, dlq_rate_threshold=1e9,
    )


def _partition(event_id: str) -> int:
    """The inference partition of a prediction produced with its event id as the key (librdkafka's
    default partitioner: CRC-32 of the key)."""
    return zlib.crc32(event_id.encode()) % PARTITIONS


def _event_on(partition: int | None, **kw: Any) -> dict[str, Any]:
    while True:
        ev = inference_event(**kw)
        if partition is None or _partition(ev["event_id"]) == partition:
            return ev


def _predictions(models: dict[str, str]) -> list[dict[str, Any]]:
    """200 per model; the ones lacking lineage use a version that was never trained."""
    events = []
    for key, model in models.items():
        missing = MISSING[key]
        on = 0 if key == "under" else None
        events += [_event_on(on, model=model, version="untrained") for _ in range(missing)]
        events += [_event_on(None, model=model, version="1") for _ in range(PER_MODEL - missing)]
    return events


def _share_alerts(pipe: Pipeline, model: str) -> list[dict[str, Any]]:
    return [a for a in pipe.hook.alerts("InferenceLineageIncomplete") if a["labels"]["model"] == model]


def _window_figures(pipe: Pipeline, model: str) -> list[tuple[str, dict[str, str], float]]:
    res = http_json(pipe.settings, "/api/sql", {
        "sql": "SELECT name, labels, value FROM pipeline_metrics FINAL WHERE labels['model'] = {m:String} "
               "AND name IN ('inference_window_events', 'inference_window_lineage_share') ORDER BY name",
        "params": {"m": model}})
    return [(r[0], r[1], round(float(r[2]), 6)) for r in res["rows"]]


def test_share_is_exact_across_two_workers(pipe: Pipeline) -> None:
    s = pipe.settings
    assert s.topics.partitions == PARTITIONS
    tag = uuid.uuid4().hex[:6]
    models = {"over": f"over-{tag}", "under": f"under-{tag}"}
    # Training lineage first, while one worker runs: the second recovers the join table at start.
    trainings = [training_event(m, "1") for m in models.values()]
    produce_all(s, [(s.topics.training, None, raw, None) for raw in encode_many(s, "training", trainings)])
    wait_until(lambda: windows_caught_up(s), 120, f"the training events through the worker\n{pipe.logs()}", 0.5)
    second = worker_proc(s, pipe.env, "worker-1")
    second.start()
    try:
        def shared(topic: str, group: str | None = None) -> dict[str, set[int]] | None:
            a = group_assignment(s, topic, group)
            return a if len(a) == 2 and all(len(p) == 3 for p in a.values()) else None

        wait_until(lambda: shared(window_counts_topic(s)), 120,
                   f"two workers sharing the window feed's partitions\n{pipe.logs()}", 1.0)
        # ... and the event path's own group: predictions produced during its rebalance would reach
        # the windows late, after the window closed.
        owners = wait_until(lambda: shared(s.topics.inference, s.events_group), 120,
                            f"two workers sharing the inference partitions\n{pipe.logs()}", 1.0)
        p0_owner = next(parts for parts in owners.values() if 0 in parts)

        # All predictions inside one window (a window that leaves time to process them).
        left = WINDOW - time.time() % WINDOW
        if left < WINDOW - 5:
            time.sleep(left + 0.5)
        events = _predictions(models)
        produce_all(s, [(s.topics.inference, ev["event_id"].encode(), raw, None)
                        for ev, raw in zip(events, encode_many(s, "inference", events))])
        ids = {ev["event_id"] for ev in events}
        rows = wait_until(lambda: (lambda r: r if len(r) == len(ids) else None)(
            [m for m in read_to_end(s, s.topics.graph) if m.key().decode() in ids]), 60,
            f"graph rows of the predictions\n{pipe.logs()}", 1.0)
        assert len({int(m.timestamp()[1] / 1000) // WINDOW for m in rows}) == 1, "the predictions straddle two windows"
        inf = [(_partition(m.key().decode()), orjson.loads(m.value())["inference"]) for m in rows]
        lacking = {key: [p for p, r in inf if r["model_name"] == m and not r["training_run_id"]]
                   for key, m in models.items()}
        assert {k: len(v) for k, v in lacking.items()} == MISSING
        assert set(lacking["under"]) == {0}
        # Counted per worker, the owner of partition 0 would see more than 5% for `under`.
        local = sum(1 for p, r in inf if r["model_name"] == models["under"] and p in p0_owner)
        assert MISSING["under"] / local > 0.05, (local, p0_owner)

        # `over` fires once, over the whole model's window; `under` stays quiet.
        (fired,) = wait_until(lambda: _share_alerts(pipe, models["over"]), WINDOW + 60,
                              f"InferenceLineageIncomplete for {models['over']}\n{pipe.logs()}", 0.5)
        assert fired["status"] == "firing"
        assert f"6.0% of {PER_MODEL} inference events" in fired["annotations"]["summary"], fired
        for key, share in (("over", 0.94), ("under", 0.96)):
            want = [("inference_window_events", {"model": models[key]}, float(PER_MODEL)),
                    ("inference_window_lineage_share", {"model": models[key]}, share)]
            got = wait_until(lambda k=key, w=want: (lambda f: f if f == w else None)(_window_figures(pipe, models[k])),
                             60, f"exact window figures for {key}\n{pipe.logs()}", 1.0)
            assert got == want
        time.sleep(10 * pipe.alerts.eval_interval_s)  # further evaluations by either worker
        assert _share_alerts(pipe, models["under"]) == []
        assert len(_share_alerts(pipe, models["over"])) == 1
        assert second.is_running() and pipe.worker.is_running(), pipe.logs()
    finally:
        second.stop(timeout=30)
