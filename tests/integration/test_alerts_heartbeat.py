"""Heartbeat for real: an expected emitter that keeps emitting raises nothing; once it is silent
for a heartbeat window, EmitterSilent fires once (webhook, alerts topic, ClickHouse); when it
emits again the alert resolves. An emitter nobody expects may go silent without an alert, and
an alert left active for an emitter no longer expected is resolved."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from helpers import wait_until
from integration.alerts_support import (
    Pipeline,
    ch_alerts,
    once_each,
    start_pipeline,
    topic_alerts,
    windows_caught_up,
)
from factories import run_event
from integration.worker_support import encode_many, produce_all
from stream_apps.alerts.completeness import SILENT_ALERT
from lineage.keyspace import KeySpace
from stream_apps.alerts.lifecycle import AlertBook
from stream_apps.alerts.model import Alert

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEARTBEAT_S = 12.0
EXPECTED = f"https://example.com/heartbeat-{uuid.uuid4().hex[:8]}"
UNEXPECTED = "https://example.com/unexpected"  # emits alongside, then stops too: never alerts
RETIRED = "https://example.com/retired"  # was expected once: its leftover active alert resolves


@pytest.fixture(scope="module")
def pipe(stack, tmp_path_factory) -> Iterator[Pipeline]:
    yield from start_pipeline(
        stack, Path(tmp_path_factory.mktemp("hb")),
        expected_emitters=(EXPECTED,), heartbeat_window_s=HEARTBEAT_S,
        window_s=10, eval_interval_s=0.5, sample_interval_s=2, cooldown_s=300,
        lag_threshold=1_000_000, dlq_rate_threshold=1e9,
    )


def _emit(pipe: Pipeline, *producers: str) -> float:
    """One COMPLETE run event per producer; returns when the broker has them."""
    s = pipe.settings
    events = [run_event("dataset", producer=p) for p in producers]
    produce_all(s, [(s.topics.dataset, None, raw, None) for raw in encode_many(s, "dataset", events)])
    return time.time()


def _silent(pipe: Pipeline, emitter: str = EXPECTED) -> list[dict]:
    return [a for a in pipe.hook.alerts("EmitterSilent") if a["labels"]["emitter"] == emitter]


def _leave_active_alert(pipe: Pipeline, emitter: str) -> None:
    """An EmitterSilent still active from a configuration that expected `emitter`."""
    async def run() -> None:
        redis = aioredis.from_url(pipe.settings.redis_url)
        try:
            book = AlertBook(redis, KeySpace.of(pipe.settings), 0)
            assert await book.fire(Alert.firing(SILENT_ALERT, {"emitter": emitter}, f"{emitter} silent")) is not None
        finally:
            await redis.aclose()

    asyncio.run(run())


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_expected_emitter_silent_fires_once_and_resolves(pipe: Pipeline) -> None:
    s = pipe.settings
    _leave_active_alert(pipe, RETIRED)
    # 1. The emitter is alive: its events reach the windows agent (the batches' feed records consumed).
    _emit(pipe, EXPECTED, UNEXPECTED)
    wait_until(lambda: windows_caught_up(s), 120,
               f"windows agent to consume the first feed records\n{pipe.logs()}", 0.5)
    # Emitting more often than the heartbeat window, for longer than it: nothing fires.
    until = time.monotonic() + HEARTBEAT_S * 1.5
    while time.monotonic() < until:
        last = _emit(pipe, EXPECTED, UNEXPECTED)
        time.sleep(2.0)
        assert _silent(pipe) == [], f"EmitterSilent while the emitter was emitting\n{pipe.logs()}"
    wait_until(lambda: windows_caught_up(s), 60,
               f"windows agent to consume the last heartbeat\n{pipe.logs()}", 0.5)

    # 2. Silence for a heartbeat window: one firing, for the expected emitter only, not early.
    (firing,) = wait_until(lambda: _silent(pipe), HEARTBEAT_S + 90, f"EmitterSilent after {HEARTBEAT_S}s\n{pipe.logs()}", 0.5)
    assert firing["status"] == "firing"
    assert firing["labels"] == {"alertname": "EmitterSilent", "severity": "warning", "emitter": EXPECTED}
    assert EXPECTED in firing["annotations"]["summary"]
    assert _epoch(firing["startsAt"]) >= last + HEARTBEAT_S - 1.0, "fired before the emitter was silent a window"
    time.sleep(5 * pipe.alerts.eval_interval_s)  # further evaluations must not notify again
    assert len(_silent(pipe)) == 1, _silent(pipe)

    # 3. It emits again: the alert resolves (once), the unexpected emitter never alerted.
    _emit(pipe, EXPECTED)
    wait_until(lambda: any(a["status"] == "resolved" for a in _silent(pipe)), 90,
               f"EmitterSilent to resolve\n{pipe.logs()}", 0.5)
    hook = once_each([{"fingerprint": a["fingerprint"], "state": a["status"], "n": "EmitterSilent"}
                      for a in pipe.hook.alerts("EmitterSilent")], "n", {"EmitterSilent"})
    (retired,) = _silent(pipe, RETIRED)
    assert hook == {firing["fingerprint"]: ["firing", "resolved"], retired["fingerprint"]: ["resolved"]}
    assert _silent(pipe, UNEXPECTED) == []

    # 4. The same transitions on the alerts topic and in ClickHouse.
    assert once_each(topic_alerts(s), "alert_name", {"EmitterSilent"}) == hook
    rows = wait_until(lambda: (lambda r: r if r == hook else None)(
        once_each(ch_alerts(s), "alert_name", {"EmitterSilent"})), 60, f"EmitterSilent rows in ClickHouse\n{pipe.logs()}", 1.0)
    assert rows == hook
