"""A paused worker holds window evaluation back until its partitions' data is counted.

Two workers share every group (the event path's and the Faust app's), three partitions each.
One model's window gets 200 predictions: the 8 that lack lineage (a version never trained, 4%:
under the 5% the share alert allows) on the running worker's inference partitions, the 192
complete ones on the other worker's, which is stopped (SIGSTOP) before they are produced. The
model's window counts live on the running worker, which sees the 8 alone once the window closed:
evaluated then (by wall clock) it would publish a false InferenceLineageIncomplete at 100%.
With the watermark gate it waits; after SIGCONT the figures published for the window are the
exact ones (200 events, share 0.96), and no share alert is ever published.
"""
from __future__ import annotations

import signal
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from factories import inference_event, training_event
from helpers import wait_until
from integration.alerts_support import (
    Pipeline,
    committed_caught_up,
    group_assignment,
    start_pipeline,
    topic_alerts,
    worker_proc,
)
from integration.worker_support import encode_many, produce_all, read_to_end
from lineage.topics import window_counts_topic
from shell.stack.process import ManagedProcess
from stream_apps.alerts.completeness import SHARE_ALERT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 3
GRACE = 0.5
EVAL = 0.5
PARTITIONS = 6
LACKING, COMPLETE = 8, 192


def _pipeline(stack: Any, tmp: Path, max_wait_s: float) -> Iterator[Pipeline]:
    return start_pipeline(
        stack, tmp, window_s=WINDOW, window_grace_s=GRACE, eval_interval_s=EVAL, eval_horizon_s=180,
        watermark_max_wait_s=max_wait_s, resolve_after_s=3, lineage_share_min=0.95, sample_interval_s=2,
        cooldown_s=300, lag_threshold=1_000_000, dlq_rate_threshold=1e9,
    )


@pytest.fixture
def pipe(stack, tmp_path) -> Iterator[Pipeline]:
    """A bounded wait far longer than the pause."""
    yield from _pipeline(stack, tmp_path, 120)


@pytest.fixture
def impatient(stack, tmp_path) -> Iterator[Pipeline]:
    """A bounded wait (1 s) that expires while a worker is stopped."""
    yield from _pipeline(stack, tmp_path, 1)


def _key_on(partition: int) -> bytes:
    """A message key librdkafka's default partitioner (CRC-32 of the key) sends to ``partition``."""
    n = 0
    while zlib.crc32(f"k{n}".encode()) % PARTITIONS != partition:
        n += 1
    return f"k{n}".encode()


def _only_member(settings: Any, topic: str, group: str | None = None) -> str | None:
    a = group_assignment(settings, topic, group)
    return next(iter(a)) if len(a) == 1 and len(next(iter(a.values()))) == PARTITIONS else None


def _shared(settings: Any, topic: str, group: str | None = None) -> dict[str, set[int]] | None:
    a = group_assignment(settings, topic, group)
    return a if len(a) == 2 and all(len(p) == PARTITIONS // 2 for p in a.values()) else None


def _committed_on(settings: Any, group: str, topic: str, parts: set[int]) -> bool:
    from stream_apps.monitor.lag import LagSampler

    s = LagSampler(settings.kafka_common(), settings.topics.prefix, (group,)).sample()
    highs = {p: h for (t, p), h in s.high.items() if t == topic and p in parts and h > 0}
    got = {p.partition: p.lag for p in s.lag if p.topic == topic}
    return all(got.get(p) == 0 for p in highs)


def _window_points(pipe: Pipeline, model: str) -> list[tuple[str, str, float]]:
    """Every window figure published for ``model`` on the metrics topic: (name, window end, value),
    in the order they were published (the records spread over partitions: sorted by record time)."""
    out = []
    for m in read_to_end(pipe.settings, pipe.settings.topics.metrics):
        rec = orjson.loads(m.value())
        if rec["labels"].get("model") == model and rec["name"].startswith("inference_window_"):
            out.append((m.timestamp()[1], m.partition(), m.offset(), (rec["name"], rec["ts"], float(rec["value"]))))
    return [point for *_, point in sorted(out)]


@dataclass
class Held:
    """Two workers; worker 2 stopped while it holds 192 of the window's 200 predictions."""

    model: str
    end: float
    second: ManagedProcess
    theirs_ev: set[int]


@contextmanager
def _held_window(pipe: Pipeline) -> Iterator[Held]:
    s = pipe.settings
    assert s.topics.partitions == PARTITIONS
    feed = window_counts_topic(s)
    w1_app = wait_until(lambda: _only_member(s, feed), 120, f"worker 1 alone\n{pipe.logs()}", 0.5)
    w1_ev = wait_until(lambda: _only_member(s, s.topics.inference, s.events_group), 120,
                       f"worker 1's event path alone\n{pipe.logs()}", 0.5)
    second = worker_proc(s, pipe.env, "worker-2")
    second.start()
    try:
        app = wait_until(lambda: _shared(s, feed), 180, f"two workers sharing\n{pipe.logs()}", 1.0)
        ev = wait_until(lambda: _shared(s, s.topics.inference, s.events_group), 180,
                        f"two event paths sharing\n{pipe.logs()}", 1.0)
        # Member ids survive rebalances: the one that was alone is the worker that keeps running.
        assert w1_app in app and w1_ev in ev, (app, ev)
        mine_ev, theirs_ev = ev[w1_ev], set(range(PARTITIONS)) - ev[w1_ev]
        mine_feed = app[w1_app]

        # A model whose window counts the running worker keeps (keyed by model: librdkafka's
        # default partitioner, CRC-32 of the key).
        tag = uuid.uuid4().hex[:6]
        model = next(m for m in (f"wm-{tag}-{i}" for i in range(1000)) if zlib.crc32(m.encode()) % PARTITIONS in mine_feed)
        produce_all(s, [(s.topics.training, None, raw, None) for raw in encode_many(s, "training", [training_event(model, "1")])])
        wait_until(lambda: committed_caught_up(s, s.events_group, s.topics.training)
                   and committed_caught_up(s, s.app_id, feed), 120,
                   f"the training event through both workers\n{pipe.logs()}", 0.5)

        # Start of a window, then stop worker 2 and produce the window's predictions.
        wait_until(lambda: time.time() % WINDOW < 0.5, WINDOW + 1, "the start of a window", 0.05)
        assert second.signal(signal.SIGSTOP)
        lacking = [inference_event(model=model, version="untrained") for _ in range(LACKING)]
        complete = [inference_event(model=model, version="1") for _ in range(COMPLETE)]
        windows = {int(e["event_time"] / 1e6) // WINDOW for e in lacking + complete}
        assert len(windows) == 1, "the predictions straddle two windows"
        end = float((windows.pop() + 1) * WINDOW)
        mine_keys, theirs_keys = [_key_on(p) for p in sorted(mine_ev)], [_key_on(p) for p in sorted(theirs_ev)]
        raws = encode_many(s, "inference", lacking + complete)
        produce_all(s, [(s.topics.inference, mine_keys[i % len(mine_keys)], raw, None)
                        for i, raw in enumerate(raws[:LACKING])]
                    + [(s.topics.inference, theirs_keys[i % len(theirs_keys)], raw, None)
                       for i, raw in enumerate(raws[LACKING:])])
        # Worker 1 counts the 8 it holds; the window closes.
        wait_until(lambda: _committed_on(s, s.events_group, s.topics.inference, mine_ev)
                   and _committed_on(s, s.app_id, feed, mine_feed), 30,
                   f"worker 1 counting its share\n{pipe.logs()}", 0.2)
        yield Held(model, end, second, theirs_ev)
    finally:
        second.signal(signal.SIGCONT)
        second.stop(timeout=30)


def _share_alerts(pipe: Pipeline, model: str) -> list[dict[str, Any]]:
    return [a for a in pipe.hook.alerts(SHARE_ALERT) if a["labels"]["model"] == model]


WANT = {"inference_window_events": float(LACKING + COMPLETE),
        "inference_window_lineage_share": COMPLETE / (LACKING + COMPLETE)}


def _exact_figures(pipe: Pipeline, held: Held) -> list[tuple[str, str, float]]:
    """Waits until the last published figures of the window are the exact ones; returns them all."""
    def last() -> list[tuple[str, str, float]] | None:
        points = _window_points(pipe, held.model)
        latest = {n: round(v, 6) for n, _, v in points}
        return points if latest == {n: round(v, 6) for n, v in WANT.items()} else None
    return wait_until(last, 90, f"the window's exact figures\n{pipe.logs()}\n--- worker 2\n{held.second.tail(60)}", 1.0)


def test_paused_worker_holds_the_window_back(pipe: Pipeline) -> None:
    s = pipe.settings
    with _held_window(pipe) as held:
        # The evaluation ticks a wall clock would have evaluated the window at go by.
        wait_until(lambda: time.time() >= held.end + GRACE + 3 * EVAL, WINDOW + 10, "the window to close", 0.1)
        assert not _committed_on(s, s.events_group, s.topics.inference, held.theirs_ev), "worker 2 held no data"
        assert _share_alerts(pipe, held.model) == []
        assert _window_points(pipe, held.model) == [], "figures published for a window still held"
        assert held.second.signal(signal.SIGCONT)

        points = _exact_figures(pipe, held)
        # Exact from the first publication: nothing partial went out, before or after the resume.
        assert {(n, round(v, 6)) for n, _, v in points} == {(n, round(v, 6)) for n, v in WANT.items()}, points
        assert len({ts for _, ts, _ in points}) == 1
        assert [r for r in topic_alerts(s) if r["alert_name"] == SHARE_ALERT and r["labels"].get("model") == held.model] == []
        assert _share_alerts(pipe, held.model) == []
        assert held.second.is_running() and pipe.worker.is_running(), pipe.logs()


def test_bounded_wait_fires_then_late_counts_correct_it_once(impatient: Pipeline) -> None:
    pipe, s = impatient, impatient.settings
    with _held_window(pipe) as held:
        # The 1 s wait expires with worker 2's partitions behind: the partial count (8 of 8) fires.
        (fired,) = wait_until(lambda: _share_alerts(pipe, held.model), 30,
                              f"the share alert on the partial count\n{pipe.logs()}", 0.2)
        assert fired["status"] == "firing" and "100.0% of 8 inference events" in fired["annotations"]["summary"], fired
        assert not _committed_on(s, s.events_group, s.topics.inference, held.theirs_ev), "worker 2 held no data"
        assert held.second.signal(signal.SIGCONT)

        # Its data is counted: the window is evaluated again, the figures corrected, the alert resolved.
        points = _exact_figures(pipe, held)
        assert ("inference_window_events", 8.0) in {(n, v) for n, _, v in points}, points  # the partial figures went out
        states = wait_until(lambda: (lambda a: a if [x["status"] for x in a] == ["firing", "resolved"] else None)(
            _share_alerts(pipe, held.model)), 60, f"the share alert resolved\n{pipe.logs()}", 0.5)
        # Each state change published once, on the topic as to the webhook.
        on_topic = [r for r in topic_alerts(s) if r["alert_name"] == SHARE_ALERT and r["labels"].get("model") == held.model]
        assert [r["state"] for r in on_topic] == ["firing", "resolved"], on_topic
        assert len(states) == 2
        assert held.second.is_running() and pipe.worker.is_running(), pipe.logs()
