"""Helpers for the alert/dashboard integration tests: one real pipeline (worker + sink) per module,
a webhook receiver on 127.0.0.1, and readers for the alerts topic and ClickHouse."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from helpers import auth_headers, make_topics, wait_until
from shell.processes import keyholder_process, sink_process
from lineage.settings import Settings, TopicSettings, settings_to_env
from lineage.topics import window_counts_topic
from shell.stack.process import ManagedProcess
from stream_apps.alerts.config import AlertSettings
from integration.worker_support import free_port



class WebhookReceiver:
    """A real HTTP server recording Alertmanager webhook bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            items = [a for b in self.bodies for a in b["alerts"]]
        return [a for a in items if name is None or a["labels"]["alertname"] == name]

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class Pipeline:
    settings: Settings
    alerts: AlertSettings
    env: dict[str, str]
    worker: ManagedProcess
    sink: ManagedProcess
    hook: WebhookReceiver
    restarts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def new_worker(self) -> ManagedProcess:
        self.restarts += 1
        self.worker = worker_proc(self.settings, self.env, f"worker-r{self.restarts}")
        self.worker.start()
        return self.worker

    def logs(self) -> str:
        return f"--- worker\n{self.worker.tail(60)}\n--- sink\n{self.sink.tail(60)}"


def worker_proc(settings: Settings, env: dict[str, str], name: str = "worker-0") -> ManagedProcess:
    argv = [sys.executable, "-m", "shell", "worker", "--log-level", "info"]
    return ManagedProcess.in_data_dir(Path(settings.data_dir), name, argv, env=env, cwd=Path.cwd())


def start_pipeline(stack: Any, tmp: Path, with_worker: bool = True, settings_overrides: dict[str, Any] | None = None,
                   **alert_overrides: Any) -> Iterator[Pipeline]:
    hook = WebhookReceiver()
    cfg = AlertSettings(**{"webhook_url": hook.url, **alert_overrides})
    tag = uuid.uuid4().hex[:8]
    overrides: dict[str, Any] = {
        "data_dir": tmp,
        "app_id": f"test-{tag}",
        "topics": TopicSettings(prefix=f"t{tag}", openlineage=f"t{tag}.openlineage.events"),
        "api_port": free_port(),
    }
    overrides["alerts"] = cfg
    overrides.update(settings_overrides or {})
    settings = stack.settings(**overrides)
    make_topics(settings)
    env = {**os.environ, **settings_to_env(settings)}
    sink = sink_process(settings)
    worker = worker_proc(settings, env)
    keyholder = keyholder_process(settings)  # the sink's snapshot decrypts go through it
    keyholder.start()
    sink.start()
    if with_worker:
        worker.start()
    pipe = Pipeline(settings, cfg, env, worker, sink, hook)
    try:
        wait_until(lambda: http_json(settings, "/health").get("status") == "ok", 90, f"sink API\n{pipe.logs()}", 0.5)
        if with_worker:  # the worker's Faust group owns its partitions: tables recovered, agents running
            wait_until(lambda: group_assignment(settings, window_counts_topic(settings)), 180,
                       f"the worker to join its group\n{pipe.logs()}", 0.5)
        yield pipe
    finally:
        for proc in (pipe.worker, sink, keyholder):
            proc.signal(18)  # SIGCONT in case a test left it stopped
            proc.stop(timeout=30)
        hook.close()


def http_json(settings: Settings, path: str, body: dict[str, Any] | None = None, role: str | None = "admin") -> Any:
    """GET (or POST ``body``) the sink API with a key of ``role`` (None: anonymous)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(auth_headers(settings, role) if role else {})}
    req = urllib.request.Request(settings.api_url + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def http_text(settings: Settings, path: str, role: str | None = "admin") -> tuple[str, str]:
    req = urllib.request.Request(settings.api_url + path, headers=auth_headers(settings, role) if role else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode(), resp.headers.get("Content-Type", "")


def ch_alerts(settings: Settings) -> list[dict[str, Any]]:
    res = http_json(settings, "/api/sql", {
        "sql": "SELECT alert_name, state, fingerprint, labels, summary FROM alerts FINAL ORDER BY updated_at"})
    cols = res["columns"]
    return [dict(zip(cols, row)) for row in res["rows"]]


def topic_alerts(settings: Settings, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Every record on the alerts topic so far (read from the beginning with a throwaway group)."""
    c = Consumer({**settings.kafka_common(), "group.id": f"check-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([settings.topics.alerts])
    out: list[dict[str, Any]] = []
    idle_until = time.monotonic() + timeout
    try:
        while time.monotonic() < idle_until:
            for m in c.consume(500, timeout=0.5):
                if m.error() is None:
                    out.append(json.loads(m.value()))
                    idle_until = time.monotonic() + 2.0
    finally:
        c.close()
    return out


def committed_caught_up(settings: Settings, group: str, topic: str) -> bool:
    """True when `group` committed up to the high watermark on every partition of `topic` that has data."""
    from stream_apps.monitor.lag import LagSampler

    s = LagSampler(settings.kafka_common(), settings.topics.prefix, (group,)).sample()
    highs = {p: h for (t, p), h in s.high.items() if t == topic and h > 0}
    got = {p.partition: p.lag for p in s.lag if p.topic == topic}
    return bool(highs) and all(got.get(p) == 0 for p in highs)


def windows_caught_up(settings: Settings) -> bool:
    """True when every event the event path was given is in the windows: its group committed every
    event topic that has data (it commits after the batch's feed records were acknowledged), and
    then the Faust app committed the whole window feed."""
    from stream_apps.monitor.lag import LagSampler

    topics = set(settings.topics.event_topics.values())
    s = LagSampler(settings.kafka_common(), settings.topics.prefix, (settings.events_group,)).sample()
    lags = {(p.topic, p.partition): p.lag for p in s.lag}
    if any(lags.get(tp) != 0 for tp, high in s.high.items() if tp[0] in topics and high > 0):
        return False
    return committed_caught_up(settings, settings.app_id, window_counts_topic(settings))


def group_assignment(settings: Settings, topic: str, group: str | None = None) -> dict[str, set[int]]:
    """Member id -> partitions of `topic` it owns in `group` (default: the Faust app's group);
    {} unless the group is stable."""
    group = group or settings.app_id
    admin = AdminClient(settings.kafka_common())
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    if not str(desc.state).endswith("STABLE"):
        return {}
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic}
            for m in desc.members}


def once_each(records: list[dict[str, Any]], name_key: str, names: set[str]) -> dict[str, list[str]]:
    """fingerprint -> list of states, for records of the alert names given."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r[name_key] in names:
            out.setdefault(r["fingerprint"], []).append(r["state"] if "state" in r else r["status"])
    return out
