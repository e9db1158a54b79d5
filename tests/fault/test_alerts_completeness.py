"""Completeness windows for real: unknown model versions on several partitions all fire; a window
open when the worker is killed still fires after the restart (recovered from the changelog); a
START with no terminal event fires after its deadline and resolves when COMPLETE arrives."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import wait_until
from integration.alerts_support import (
    Pipeline,
    ch_alerts,
    once_each,
    start_pipeline,
    topic_alerts,
    windows_caught_up,
)
from factories import inference_event, run_event
from integration.worker_support import encode_many, produce_all

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.slow]

WINDOW = 10


@pytest.fixture(scope="module")
def pipe(stack, tmp_path_factory) -> Iterator[Pipeline]:
    yield from start_pipeline(
        stack, Path(tmp_path_factory.mktemp("cw")),
        window_s=WINDOW, eval_interval_s=0.5, eval_horizon_s=40, resolve_after_s=3, run_deadline_s=15,
        lag_threshold=1_000_000, dlq_rate_threshold=1e9, sample_interval_s=2, cooldown_s=300,
    )


def _unknown(s, models: list[str], per_model: int = 6) -> list[tuple[str, bytes, bytes, None]]:
    events = [inference_event(model=m, version="v-unknown") for m in models for _ in range(per_model)]
    return [(s.topics.inference, uuid.uuid4().hex.encode(), raw, None) for raw in encode_many(s, "inference", events)]


def _hook_states(pipe: Pipeline, name: str) -> dict[str, list[str]]:
    return once_each([{"fingerprint": a["fingerprint"], "state": a["status"], "n": a["labels"]["alertname"]}
                      for a in pipe.hook.alerts(name)], "n", {name})


def _models_firing(pipe: Pipeline, models: list[str]) -> set[str]:
    return {a["labels"]["model"] for a in pipe.hook.alerts("UnknownModelVersion")
            if a["status"] == "firing" and a["labels"]["model"] in models}


def _wait_window_start(min_left: float) -> None:
    """Sleep until a fresh window has at least `min_left` seconds to run."""
    left = WINDOW - time.time() % WINDOW
    if left < min_left:
        time.sleep(left + 0.2)


def test_windows_on_all_partitions_fire_and_survive_restart(pipe: Pipeline) -> None:
    s = pipe.settings
    # 1. Several models; inference events are spread over the partitions, so each model's events span them.
    spread = [f"spread-{i}" for i in range(6)]
    produce_all(s, _unknown(s, spread))
    got = wait_until(lambda: (lambda m: m if m == set(spread) else None)(_models_firing(pipe, spread)),
                     90, f"an UnknownModelVersion alert per model\n{pipe.logs()}", 0.5)
    assert got == set(spread)

    # 2. Restart mid-window: events counted and committed, worker killed before the window closes.
    _wait_window_start(WINDOW - 1)
    restart = ["restart-a", "restart-b"]
    run_id = str(uuid.uuid4())
    start_raw = encode_many(s, "dataset", [run_event("dataset", run_id=run_id, event_type="START")])
    produce_all(s, _unknown(s, restart) + [(s.topics.dataset, None, start_raw[0], None)])
    wait_until(lambda: windows_caught_up(s), 30,
               f"windows agent to commit the batch's feed records\n{pipe.logs()}", 0.2)
    assert _models_firing(pipe, restart) == set(), "fired before the window closed"
    pipe.worker.kill()
    pipe.new_worker()
    fired = wait_until(lambda: (lambda m: m if m == set(restart) else None)(_models_firing(pipe, restart)),
                       90, f"restart-window alerts after the restart\n{pipe.logs()}", 0.5)
    assert fired == set(restart)

    # 3. The run that STARTed before the restart misses its deadline, then COMPLETE resolves it.
    wait_until(lambda: any(a["labels"]["run_id"] == run_id and a["status"] == "firing"
                           for a in pipe.hook.alerts("RunIncomplete")), 60,
               f"RunIncomplete after the deadline\n{pipe.logs()}", 0.5)
    done = encode_many(s, "dataset", [run_event("dataset", run_id=run_id, event_type="COMPLETE")])
    produce_all(s, [(s.topics.dataset, None, done[0], None)])
    wait_until(lambda: any(a["labels"]["run_id"] == run_id and a["status"] == "resolved"
                           for a in pipe.hook.alerts("RunIncomplete")), 60,
               f"RunIncomplete to resolve\n{pipe.logs()}", 0.5)

    # 4. No more unknown-version traffic: every window alert resolves; each appears once everywhere.
    names = {"UnknownModelVersion", "RunIncomplete"}

    def all_resolved() -> bool:
        states = {**_hook_states(pipe, "UnknownModelVersion"), **_hook_states(pipe, "RunIncomplete")}
        return len(states) >= len(spread) + len(restart) + 1 and all(v == ["firing", "resolved"] for v in states.values())

    wait_until(all_resolved, 120, f"window alerts to resolve\n{pipe.logs()}", 1.0)
    hook = {**_hook_states(pipe, "UnknownModelVersion"), **_hook_states(pipe, "RunIncomplete")}
    topic = once_each(topic_alerts(s), "alert_name", names)
    assert topic == hook
    rows = wait_until(lambda: (lambda r: r if set(r) == set(hook) and all(len(v) == 2 for v in r.values()) else None)(
        once_each(ch_alerts(s), "alert_name", names)), 60, "alerts in ClickHouse", 1.0)
    assert all(sorted(v) == ["firing", "resolved"] for v in rows.values())
