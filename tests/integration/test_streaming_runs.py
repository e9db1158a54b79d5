"""Streaming runs on the real stack: a Flink job's repeated RUNNING is normal and is never awaited
to end (no RunIncomplete); when its updates stop, StreamingRunStalled fires, and it resolves once
they resume."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from helpers import wait_until
from integration.alerts_support import Pipeline, start_pipeline
from integration.worker_support import produce_all

pytestmark = [pytest.mark.integration]
FLINK = json.loads((Path(__file__).resolve().parents[1] / "data" / "openlineage" / "flink_streaming_running.json").read_text())
STALL_S = 15  # generous: on a loaded 2-core machine an update may take seconds to reach the tracker
DEADLINE_S = 12


@pytest.fixture(scope="module")
def pipe(stack, tmp_path_factory) -> Iterator[Pipeline]:
    yield from start_pipeline(
        stack, Path(tmp_path_factory.mktemp("streaming")), eval_interval_s=0.5, resolve_after_s=3,
        run_deadline_s=DEADLINE_S, streaming_stall_s=STALL_S, lag_threshold=1_000_000, dlq_rate_threshold=1e9,
        sample_interval_s=2, cooldown_s=0.5,
    )


def _update(pipe: Pipeline, run_id: str, event_type: str, streaming: bool = True) -> None:
    job = FLINK["job"] if streaming else {**FLINK["job"], "name": "nightly_batch", "facets": {}}
    event = {**FLINK, "eventType": event_type, "run": {**FLINK["run"], "runId": run_id}, "job": job,
             "eventTime": datetime.now(timezone.utc).isoformat()}
    produce_all(pipe.settings, [(pipe.settings.topics.openlineage, None, orjson.dumps(event), None)])


def _states(pipe: Pipeline, name: str, run_id: str) -> list[str]:
    return [a["status"] for a in pipe.hook.alerts(name) if a["labels"].get("run_id") == run_id]


def test_a_streaming_run_alerts_when_its_updates_stop(pipe: Pipeline) -> None:
    streaming, batch = str(uuid.uuid4()), str(uuid.uuid4())
    _update(pipe, streaming, "START")
    _update(pipe, batch, "START", streaming=False)  # a batch run with no end: the run deadline applies
    # Updates every 2 s for longer than both the stall window and the run deadline: nothing fires.
    until = time.monotonic() + STALL_S + 8
    while time.monotonic() < until:
        _update(pipe, streaming, "RUNNING")
        time.sleep(2)
    wait_until(lambda: "firing" in _states(pipe, "RunIncomplete", batch), 60, f"the batch run's alert\n{pipe.logs()}", 0.5)
    assert _states(pipe, "RunIncomplete", streaming) == [] and _states(pipe, "StreamingRunStalled", streaming) == []

    # The updates stop: stalled.
    wait_until(lambda: "firing" in _states(pipe, "StreamingRunStalled", streaming), STALL_S + 30,
               f"the stall alert\n{pipe.logs()}", 0.5)
    assert _states(pipe, "RunIncomplete", streaming) == []
    # They resume: resolved, once.
    _update(pipe, streaming, "RUNNING")
    wait_until(lambda: "resolved" in _states(pipe, "StreamingRunStalled", streaming), 60,
               f"the stall alert to resolve\n{pipe.logs()}", 0.5)
    assert _states(pipe, "StreamingRunStalled", streaming) == ["firing", "resolved"]
