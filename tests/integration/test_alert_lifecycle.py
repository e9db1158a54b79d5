"""Alert record, Alertmanager webhook format, and the Redis-backed lifecycle (real redis-server)."""
from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import redis.asyncio as aioredis

from helpers import free_port
from lineage.keyspace import KeySpace
from lineage.metric_records import rfc3339
from stream_apps.alerts.config import AlertSettings
from stream_apps.alerts.engine import AlertEngine
from stream_apps.alerts.lifecycle import AlertBook
from stream_apps.alerts.model import Alert, fingerprint, webhook_payload
from stream_apps.alerts.publish import AlertPublisher

pytestmark = [pytest.mark.integration]



@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    d: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(d)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


class _Receiver:
    """A real HTTP server on 127.0.0.1 that records webhook bodies; can be told to fail."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _alert(**labels: str) -> Alert:
    return Alert.firing("ConsumerLagHigh", labels or {"topic": "t", "partition": "3"}, "lag 20000 on t[3]", "critical", 20000)


def test_fingerprint_is_name_plus_sorted_labels() -> None:
    a = fingerprint("X", {"a": "1", "b": "2"})
    assert a == fingerprint("X", {"b": "2", "a": "1"})
    assert a != fingerprint("Y", {"a": "1", "b": "2"})
    assert a != fingerprint("X", {"a": "1", "b": "3"})
    assert len(a) == 16 and int(a, 16) >= 0
    assert _alert().fingerprint == fingerprint("ConsumerLagHigh", {"topic": "t", "partition": "3"})


def test_invalid_severity_and_state_rejected() -> None:
    with pytest.raises(ValueError):
        Alert.firing("X", {}, "s", severity="panic")
    with pytest.raises(ValueError):
        Alert(name="X", labels={}, state="pending")


def test_webhook_payload_is_alertmanager_v4() -> None:
    firing = _alert()
    body = webhook_payload([firing], external_url="http://127.0.0.1:8088")
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "lineage"
    assert body["groupLabels"] == {"alertname": "ConsumerLagHigh"}
    assert body["groupKey"] == '{}:{alertname="ConsumerLagHigh"}'
    (item,) = body["alerts"]
    assert item["labels"] == {"alertname": "ConsumerLagHigh", "severity": "critical", "topic": "t", "partition": "3"}
    assert item["annotations"]["summary"] == "lag 20000 on t[3]"
    assert item["startsAt"].endswith("Z") and item["endsAt"] == "0001-01-01T00:00:00Z"
    assert item["fingerprint"] == firing.fingerprint
    assert body["commonLabels"] == item["labels"]
    resolved = webhook_payload([firing.resolved(firing.starts_at + 5_000_000)])
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == rfc3339(firing.starts_at + 5_000_000)


def test_topic_record_matches_sink_columns() -> None:
    rec = json.loads(_alert().to_topic())
    assert {"alert_name", "state", "severity", "labels", "summary", "starts_at", "ends_at", "fingerprint"} <= set(rec)
    assert rec["ends_at"] is None and rec["starts_at"].endswith("Z")
    assert Alert.from_json(_alert().to_json()).fingerprint == _alert().fingerprint


def test_settings_defaults_and_forbid_unknown() -> None:
    cfg = AlertSettings()
    assert (cfg.lag_threshold, cfg.lag_window_s, cfg.run_deadline_s, cfg.lineage_share_min) == (10_000, 60, 3600, 0.95)
    assert cfg.webhook_url is None and cfg.cooldown_s == 300
    with pytest.raises(ValueError):
        AlertSettings(lag_treshold=5)  # type: ignore[call-arg]


def _engine(redis_url: str, ns: str, sent: list[bytes], hook: str | None, cooldown: float = 300.0) -> AlertEngine:
    r = aioredis.from_url(redis_url)

    async def send(key: bytes, value: bytes) -> None:
        sent.append(value)

    space = KeySpace(ns)
    book = AlertBook(r, space, cooldown)
    return AlertEngine(book, AlertPublisher(send, r, space, hook, timeout_s=2, retries=1))


def test_fire_once_resolve_once_with_webhook(redis_url: str) -> None:
    rx = _Receiver()
    sent: list[bytes] = []

    async def run() -> None:
        eng = _engine(redis_url, f"t:{time.time_ns()}", sent, rx.url)
        other = _engine(redis_url, eng.book.space.prefix, sent, rx.url)  # a second evaluator, same state
        results = await asyncio.gather(*(e.fire(_alert()) for e in (eng, other, eng, other)))
        assert sum(r is not None for r in results) == 1
        assert [a.fingerprint for a in await eng.book.active()] == [_alert().fingerprint]
        assert await eng.resolve_absent(["ConsumerLagHigh"], []) != []
        assert await other.resolve_absent(["ConsumerLagHigh"], []) == []
        assert await eng.book.active() == []
        hist = await eng.book.history()
        assert [h.state for h in hist] == ["resolved", "firing"]

    asyncio.run(run())
    states = [json.loads(s)["state"] for s in sent]
    assert states == ["firing", "resolved"]
    assert [b["status"] for b in rx.bodies] == ["firing", "resolved"]
    assert rx.bodies[0]["alerts"][0]["fingerprint"] == rx.bodies[1]["alerts"][0]["fingerprint"]
    rx.close()


def test_cooldown_mutes_a_flapping_refire(redis_url: str) -> None:
    sent: list[bytes] = []

    async def run() -> None:
        eng = _engine(redis_url, f"t:{time.time_ns()}", sent, None, cooldown=1.0)
        assert await eng.fire(_alert()) is not None
        await eng.resolve(_alert().fingerprint)
        assert await eng.fire(_alert()) is None  # within the cooldown: recorded, not notified
        assert len(await eng.book.active()) == 1 and not (await eng.book.active())[0].notified
        assert await eng.resolve(_alert().fingerprint) is None  # silent resolution of a muted firing
        await asyncio.sleep(1.1)
        assert await eng.fire(_alert()) is not None

    asyncio.run(run())
    assert [json.loads(s)["state"] for s in sent] == ["firing", "resolved", "firing"]


def test_stale_alerts_resolve_and_fresh_ones_stay(redis_url: str) -> None:
    sent: list[bytes] = []

    async def run() -> None:
        eng = _engine(redis_url, f"t:{time.time_ns()}", sent, None)
        old, new = _alert(model="a"), _alert(model="b")
        await eng.book.fire(old, at_us=1_000_000)
        await eng.fire(new)
        done = await eng.resolve_stale(["ConsumerLagHigh"], 60)
        assert [d.fingerprint for d in done] == [old.fingerprint]
        assert [a.fingerprint for a in await eng.book.active()] == [new.fingerprint]

    asyncio.run(run())


def test_failed_webhook_is_counted_parked_and_retried(redis_url: str) -> None:
    rx = _Receiver()
    rx.fail = 2  # both attempts of the first delivery fail
    sent: list[bytes] = []

    async def run() -> None:
        eng = _engine(redis_url, f"t:{time.time_ns()}", sent, rx.url)
        await eng.fire(_alert())
        c = await eng.publisher.counters()
        assert c["webhook_failed"] == 1 and c["webhook_pending"] == 1
        await eng.tick()
        c = await eng.publisher.counters()
        assert c["webhook_sent"] == 1 and c["webhook_pending"] == 0

    asyncio.run(run())
    assert [b["status"] for b in rx.bodies] == ["firing"]
    rx.close()


def test_failed_topic_write_rolls_back_so_next_tick_retries(redis_url: str) -> None:
    calls: list[int] = []

    async def run() -> None:
        r = aioredis.from_url(redis_url)
        ns = KeySpace(f"t:{time.time_ns()}")

        async def send(key: bytes, value: bytes) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("broker down")

        eng = AlertEngine(AlertBook(r, ns, 300), AlertPublisher(send, r, ns))
        with pytest.raises(ConnectionError):
            await eng.fire(_alert())
        assert await eng.book.active() == []
        assert await eng.fire(_alert()) is not None

    asyncio.run(run())
    assert len(calls) == 2
