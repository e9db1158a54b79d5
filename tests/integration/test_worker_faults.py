"""Faults on the real stack: killing the pipeline's child process mid-stream loses nothing
(the unacked batch, if any, is retried by a fresh child)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest

from integration.test_worker_support import (
    encode_many,
    produce_all,
    read_to_end,
    run_event,
    running_workers,
    worker_logs,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault]
N = 20_000


def _children(pid: int) -> list[int]:
    """The worker's pipeline child (spawned; not the multiprocessing resource tracker)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
                out.append(kid)
    return out


def test_killed_pipeline_child_loses_nothing(settings_factory, make_topics):
    s = settings_factory()
    make_topics(s)
    events = [run_event("dataset") for _ in range(N)]
    raws = encode_many(s, "dataset", events)
    with running_workers(s) as (worker,):
        produce_all(s, [(s.topics.dataset, None, r, None) for r in raws[:2000]])
        deadline = time.monotonic() + 60
        while len(read_to_end(s, s.topics.graph)) < 2000:
            assert time.monotonic() < deadline, worker_logs(s)[-2000:]
            time.sleep(0.5)
        produce_all(s, [(s.topics.dataset, None, r, None) for r in raws[2000:]])
        (child,) = _children(worker.pid())
        os.kill(child, signal.SIGKILL)  # mid-stream
        deadline = time.monotonic() + 120
        while True:
            ids = {orjson.loads(m.value())["event_id"] for m in read_to_end(s, s.topics.graph)}
            if len(ids) >= N or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert worker.is_running()
        assert _children(worker.pid()) and _children(worker.pid()) != [child]  # a fresh child took over
    assert ids == {e["event_id"] for e in events}, f"{N - len(ids)} lost"
    logs = worker_logs(s)
    assert "pipeline process died" in logs or "pipeline process exited (code -9)" in logs
