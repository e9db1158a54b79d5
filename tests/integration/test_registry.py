"""The Confluent framing against a real schema registry (the stack's Apicurio build, or
``LINEAGE_TEST_REGISTRY_URL``): registration under ``<topic>-value``, ids that resolve to the
shipped schemas, a newer writer read by the shipped reader, incompatible schemas refused, and
emitters with and without the registry feeding one worker and the ClickHouse sink."""
from __future__ import annotations

import io
import json
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest

from helpers import wait_until
from integration.sink_support import api_sql, free_port, run_cli, start_sink, stop_sink, wait_healthy
from factories import inference_event, run_event
from integration.worker_support import (
    header_map,
    read_to_end,
    running_workers,
    wait_for_ids,
    worker_logs,
)
from lineage.codec import Codec
from lineage.registry import RegistryError, SchemaRegistry
from lineage.schemas import EVENT_KINDS, SchemaRepo, canonical_form
from lineage.settings import Settings
from shell.stack import Stack, unhealthy
from producers import Emitter, EmitterConfig

pytestmark = [pytest.mark.integration]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def record_of(kind: str) -> dict[str, Any]:
    if kind == "inference":
        return inference_event(snapshot={"income": "52000"}, risk=0.4)
    return run_event(kind)


def registry_get(url: str, path: str) -> Any:
    """A GET straight to the registry's Confluent API (not through our client)."""
    req = urllib.request.Request(url + path, headers={"Accept": CONTENT_TYPE})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def set_compatibility(url: str, subject: str, level: str) -> None:
    req = urllib.request.Request(
        f"{url}/config/{urllib.parse.quote(subject, safe='')}", method="PUT",
        data=json.dumps({"compatibility": level}).encode(), headers={"Content-Type": CONTENT_TYPE},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["compatibility"] == level


def newer_inference_schema() -> dict[str, Any]:
    """What a newer producer might ship: the latest inference schema plus an optional field."""
    raw = dict(SchemaRepo.load().latest("inference").raw)
    raw["fields"] = [*raw["fields"], {"name": "latency_ms", "type": ["null", "double"], "default": None,
                                       "doc": "Serving latency."}]
    return raw


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_confluent_framing_registers_under_topic_subject_and_round_trips(
    registry_url: str, settings_factory: Callable[..., Settings], kind: str
) -> None:
    s = settings_factory(schema_registry_url=registry_url)
    repo = SchemaRepo.load()
    record = record_of(kind)
    data = Codec.from_settings(s).encode(kind, record)

    assert data[0] == 0, f"not Confluent framing: first byte {data[0]:02X}"
    schema_id = int.from_bytes(data[1:5], "big")
    stored = registry_get(registry_url, f"/schemas/ids/{schema_id}")
    assert canonical_form(json.loads(stored["schema"])) == repo.latest(kind).canonical_form
    subject = f"{s.topics.event_topics[kind]}-value"  # TopicNameStrategy
    assert registry_get(registry_url, "/subjects").count(subject) == 1
    latest = registry_get(registry_url, f"/subjects/{urllib.parse.quote(subject, safe='')}/versions/latest")
    assert latest["id"] == schema_id and latest["subject"] == subject

    fresh = Codec.from_settings(s)  # empty caches: the writer schema comes from the registry
    decoded = fresh.decode(data)
    plain = Codec()  # the oracle: the same record through single-object framing
    assert decoded.framing == "confluent" and decoded.kind == kind
    assert decoded.version == repo.latest(kind).version
    assert decoded.record == plain.decode(plain.encode(kind, record)).record
    assert Codec.from_settings(s).encode(kind, record) == data  # registering again: same id, same bytes


def test_newer_writer_in_the_registry_is_read_by_the_shipped_reader(
    registry_url: str, settings_factory: Callable[..., Settings]
) -> None:
    s = settings_factory(schema_registry_url=registry_url)
    subject = f"{s.topics.inference}-value"
    Codec.from_settings(s).warm_up()  # the shipped latest is version 1 of the subject
    set_compatibility(registry_url, subject, "BACKWARD")
    raw = newer_inference_schema()
    new_id = SchemaRegistry(registry_url).register(subject, raw)
    assert registry_get(registry_url, f"/subjects/{urllib.parse.quote(subject, safe='')}/versions") == [1, 2]

    record = record_of("inference")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw, named_schemas={}), {**record, "latency_ms": 3.5})
    decoded = Codec.from_settings(s).decode(b"\x00" + new_id.to_bytes(4, "big") + buf.getvalue())

    plain = Codec()
    assert decoded.kind == "inference" and decoded.version == 0  # not a shipped version
    assert decoded.record == plain.decode(plain.encode("inference", record)).record  # latency_ms dropped


def test_incompatible_schema_is_refused_with_confluent_error_code(
    registry_url: str, settings_factory: Callable[..., Settings]
) -> None:
    s = settings_factory(schema_registry_url=registry_url)
    subject = f"{s.topics.dataset}-value"
    Codec.from_settings(s).warm_up()
    set_compatibility(registry_url, subject, "BACKWARD")
    raw = dict(SchemaRepo.load().latest("dataset").raw)
    raw["fields"] = [*raw["fields"], {"name": "owner", "type": "string"}]  # new required field: not BACKWARD
    with pytest.raises(RegistryError) as info:
        SchemaRegistry(registry_url).register(subject, raw)
    assert info.value.status == 409 and info.value.error_code == 409


def edges_of(settings: Settings, event_ids: list[str]) -> dict[str, set[tuple[str, str, str]]]:
    quoted = ", ".join(f"'{e}'" for e in event_ids)
    rows = api_sql(settings, f"SELECT DISTINCT event_id, src, dst, edge_type FROM edges WHERE event_id IN ({quoted})")
    found: dict[str, set[tuple[str, str, str]]] = {}
    for event_id, src, dst, edge_type in rows:
        found.setdefault(event_id, set()).add((src, dst, edge_type))
    return found


@pytest.mark.slow
def test_emitters_with_and_without_registry_feed_one_worker_and_the_sink(
    registry_url: str, settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]],
    tmp_path: Path,
) -> None:
    s = settings_factory(schema_registry_url=registry_url, api_port=free_port())
    plain_s = s.model_copy(update={"schema_registry_url": None})
    make_topics(s)
    t = s.topics
    with_registry = {kind: record_of(kind) for kind in EVENT_KINDS}
    without = {kind: record_of(kind) for kind in EVENT_KINDS}
    log = tmp_path / "sink.log"
    sink = start_sink(s, log)
    try:
        with running_workers(s):  # the worker decodes with the registry configured
            wait_healthy(s, sink, log)
            for settings, name, records in ((s, "confluent", with_registry), (plain_s, "single-object", without)):
                with Emitter(EmitterConfig.from_settings(settings), name) as em:
                    for kind, rec in records.items():
                        em.emit_record(kind, rec)
                    assert em.flush(30) == 0
                    assert em.stats.delivered == len(EVENT_KINDS) and em.stats.failed == 0
            ids = {r["event_id"]: name for name, recs in (("confluent", with_registry), ("single-object", without))
                   for r in recs.values()}
            wait_for_ids(s, t.graph, set(ids), timeout=120)

            def all_edges() -> dict[str, set[tuple[str, str, str]]] | None:
                found = edges_of(s, list(ids))
                return found if set(found) == set(ids) else None

            found = wait_until(all_edges, 120, "edges of all 8 events in ClickHouse")
    except AssertionError:
        print(worker_logs(s)[-4000:], log.read_text()[-4000:])
        raise
    finally:
        stop_sink(sink)

    # What was on the input topics: each emitter's own framing, by event id.
    framing = {}
    for topic in t.event_topics.values():
        for m in read_to_end(s, topic):
            framing[header_map(m)["lineage-event-id"].decode()] = m.value()[:1]
    assert {e: framing[e] for e in ids} == {e: b"\x00" if n == "confluent" else b"\xc3" for e, n in ids.items()}
    assert read_to_end(s, t.deadletter) == []

    ds = with_registry["dataset"]
    run_node = f"run:{ds['run']['runId']}"
    assert {("dataset:postgres://db:5432/shop.public.orders", run_node, "read_by"),
            (run_node, "dataset:s3://lake/orders/clean", "produced")} <= found[ds["event_id"]]


class Relay:
    """Forwards ``127.0.0.1:<port>`` to ``target`` once started: a registry that comes back."""

    def __init__(self, target: str) -> None:
        parts = urllib.parse.urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = free_port()
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))
        self.server: socket.socket | None = None

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self.server is not None
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_emitter_holds_events_through_a_registry_outage_and_sends_them_after(
    registry_url: str, settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]],
) -> None:
    relay = Relay(registry_url)  # nothing listens on its port yet: the registry is "down"
    s = settings_factory(schema_registry_url=relay.url)
    make_topics(s)
    em = Emitter(EmitterConfig.from_settings(s), "registry-outage")
    try:
        ids = [em.emit_record("inference", inference_event()) for _ in range(50)]
        wait_until(lambda: em.stats.delivery_errors >= 2, 30, "the emitter to retry the dead registry")
        assert em.spool.depth == 50 and em.stats.delivered == 0 and em.stats.failed == 0
        relay.start()
        assert em.flush(60) == 0, em.metrics()
        assert em.stats.delivered == 50 and em.stats.failed == 0
    finally:
        em.close(timeout=5)
        relay.close()
    got = {header_map(m)["lineage-event-id"].decode(): m.value()[:1] for m in read_to_end(s, s.topics.inference)}
    assert got == {i: b"\x00" for i in ids}  # every event once, Confluent framed


def test_unreachable_registry_is_a_one_line_cli_error(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    s = settings_factory(schema_registry_url=dead)
    with pytest.raises(RegistryError, match=f"schema registry {dead} unreachable"):
        Codec.from_settings(s).encode("dataset", record_of("dataset"))

    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"kind": "dataset", "event": record_of("dataset")}) + "\n")
    res = run_cli(s, "emit", str(events), check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lineage: error: schema registry {dead} unreachable"), res.stderr


def test_stack_status_reports_the_registry(stack: Any, registry_url: str) -> None:
    s = stack.settings(schema_registry_url=registry_url)
    report = Stack(s).status()
    # "unmanaged": LINEAGE_TEST_REGISTRY_URL names the stack's port, but another data dir runs it.
    expected = {"up", "unmanaged"} if os.environ.get("LINEAGE_TEST_REGISTRY_URL") else {"up"}
    assert report["registry"]["status"] in expected and report["registry"]["url"] == registry_url
    assert ("registry" in unhealthy(report)) == (report["registry"]["status"] != "up")
    res = run_cli(s, "stack", "status", "--json")
    cli = json.loads(res.stdout)["registry"]
    assert (cli["status"], cli["url"], cli["managed"]) == (report["registry"]["status"], registry_url,
                                                           report["registry"]["managed"])


def test_registry_is_disabled_unless_enabled_or_configured(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path, stack={"registry_port": 28581})
    assert Stack(base)._registry_status() == {"status": "disabled", "url": None, "managed": False}
    assert not Stack(base).registry_managed
    assert Stack(base.model_copy(update={"stack": base.stack.model_copy(update={"registry": True})})).registry_managed
    ours = base.model_copy(update={"schema_registry_url": "http://127.0.0.1:28581/apis/ccompat/v7"})
    assert Stack(ours).registry_managed
    external = base.model_copy(update={"schema_registry_url": "http://u:secret@127.0.0.1:9/apis/ccompat/v7"})
    assert not Stack(external).registry_managed
    assert Stack(external)._registry_status() == {"status": "stopped", "managed": False,
                                                  "url": "http://u:***@127.0.0.1:9/apis/ccompat/v7"}
