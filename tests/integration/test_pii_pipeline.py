"""PII on the real stack: planted subject ids and feature values never appear in plaintext in any
ClickHouse table, any non-input topic, the snapshot store or the logs; snapshots decrypt (audited)
until `lineage erase`, after which they fail with a clear error."""
from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path

import urllib.error
import urllib.request

import orjson
import pytest
import redis
from confluent_kafka.admin import AdminClient

from helpers import wait_until
from lineage.settings import settings_to_env
from shell.stack.process import ManagedProcess
from helpers import auth_headers
from sinks.clickhouse.client import Store
from factories import inference_event, openlineage_event, sdk_event, training_event
from lineage.codec import Codec
from lineage.pii.sealing import KeyRing
from producers.config import EmitterConfig
from producers.emitter import Emitter
from producers.exceptions import InvalidEventError
from producers.openlineage import seal_openlineage
from integration.sink_support import env_for
from integration.worker_support import (
    LINEAGE_BIN,
    encode_many,
    free_port,
    produce_all,
    read_topic,
    read_to_end,
    running_workers,
    worker_logs,
)

pytestmark = [pytest.mark.integration]


def _sql(settings, text: str) -> dict:
    req = urllib.request.Request(f"{settings.api_url}/api/sql", data=text.encode(), headers={"Content-Type": "text/plain", **auth_headers(settings)})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


#: Tables the SQL sandbox does not serve: read from the store itself once the sink stopped.
_AUDIT_TABLES = {"query_audit", "chain_starts"}


def _clickhouse_dump(settings) -> str:
    tables = _sql(settings, "SHOW TABLES")["rows"]  # every table and view of the store's database
    assert len(tables) >= 9 and _AUDIT_TABLES <= {t[0] for t in tables}, tables
    return "\n".join(json.dumps(_sql(settings, f"SELECT * FROM {settings.clickhouse_database}.`{t[0]}`"))
                     for t in tables if t[0] not in _AUDIT_TABLES)


def _store_dump(settings, tables) -> str:
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        return "\n".join(repr(store.query(f"SELECT * FROM `{t}`").rows) for t in tables)
    finally:
        store.close()


def _audit_log(env: dict[str, str], expect: int, actions: tuple[str, ...]) -> list[dict] | None:
    """The records of ``actions`` in `lineage audit log --json`, once there are ``expect`` of them."""
    res = subprocess.run([LINEAGE_BIN, "audit", "log", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    records = [r for r in json.loads(res.stdout) if r["action"] in actions]
    return records if len(records) >= expect else None


def _openlineage_inference(pid: str, subject: str, value: str) -> dict:
    """An OpenLineage run carrying a prediction (the ``inference`` run facet) with planted PII."""
    facet = {
        "model_name": "credit", "model_version": "7", "prediction_id": pid, "decision_type": "deny",
        "risk_score": 0.5, "subject_id": subject,
        "feature_snapshot": {"values": {"income": value}, "feature_set": {"name": "customer_fs", "version": "3"}},
    }
    return openlineage_event(producer="https://example.com/ol-scoring", job=("scoring", "credit-endpoint"),
                             run_facets={"inference": facet}, inputs=())


def _post(settings, path: str, body: bytes) -> int:
    req = urllib.request.Request(f"{settings.api_url}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **auth_headers(settings, "emitter")})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0  # not listening yet


def _redis_files(settings) -> list[Path]:
    """Redis's persistence files, after it rewrote them (wherever the server keeps them)."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        folder = Path(client.config_get("dir")["dir"])
        client.bgrewriteaof()
        wait_until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0
                   and client.info("persistence")["aof_rewrite_scheduled"] == 0, 60, "AOF rewrite")
    finally:
        client.close()
    return [p for p in folder.rglob("*") if p.is_file()]


def _hits(planted: list[str], blob: bytes) -> list[str]:
    return [p for p in planted if p.encode() in blob]


def test_no_plaintext_pii_anywhere_and_erasure(settings_factory, make_topics):
    s = settings_factory(api_port=free_port())
    make_topics(s)
    t = s.topics
    tok = uuid.uuid4().hex[:10]
    # SDK: typed events through the emitter (sealed before the spool), one the SDK's schema check rejects
    subjects = [f"PLANTEDSUBJ{tok}x{i}" for i in range(20)]
    values = [f"PLANTEDVAL{tok}x{i}" for i in range(20)]
    sdk_events = []
    for i in range(20):
        ev = sdk_event("inference", prediction_id=f"pii-{tok}-{i}", subject_id=subjects[i], model_name="credit",
                       model_version="7", risk_score=0.95 if i < 10 else 0.1)
        ev.feature_snapshot.values = {"income": values[i], "zip": f"Z{tok}"}
        sdk_events.append(ev)
    schema_bad = {"prediction_id": f"pii-{tok}-schema", "subject_id": f"PLANTEDSUBJ{tok}schema",
                  "feature_snapshot": {"values": {"income": json.dumps(f"PLANTEDVAL{tok}schema")}}}
    # Kafka, as other emitters write it: sealed; one misrouted, one invalid (both dead-lettered)
    misrouted = inference_event(f"pii-{tok}-misrouted", subject_id=f"PLANTEDSUBJ{tok}mis", snapshot={"income": f"PLANTEDVAL{tok}mis"})
    bad = inference_event(f"pii-{tok}-bad", subject_id=f"PLANTEDSUBJ{tok}bad", snapshot={"income": f"PLANTEDVAL{tok}bad"}, risk=7.0)
    bad_raw = encode_many(s, "inference", [bad])[0]
    items = [(t.training, None, encode_many(s, "training", [training_event("credit", "7")])[0], None),
             (t.training, None, encode_many(s, "inference", [misrouted])[0], None),
             (t.inference, b"bad", bad_raw, None)]
    # the OpenLineage topic, written by the stock client's Kafka transport after `seal_openlineage`
    ol_subject, ol_value = f"PLANTEDSUBJ{tok}ol", f"PLANTEDVAL{tok}ol"
    public = KeyRing.under(s.keys_dir).published()
    items.append((t.openlineage, None, orjson.dumps(seal_openlineage(_openlineage_inference(f"pii-{tok}-ol", ol_subject, ol_value), public)), None))
    # the HTTP intake: plaintext on the wire (TLS is the transport's job), sealed on receipt
    http_subject, http_value = f"PLANTEDSUBJ{tok}http", f"PLANTEDVAL{tok}http"
    http_event = _openlineage_inference(f"pii-{tok}-http", http_subject, http_value)
    planted = [*subjects, *values, ol_subject, ol_value, http_subject, http_value, f"Z{tok}",
               *(f"PLANTED{k}{tok}{x}" for k in ("SUBJ", "VAL") for x in ("schema", "mis", "bad"))]
    # An emitter that does not seal: refused (sealed dead letter); its plaintext is only where it wrote it
    unsealed = inference_event(f"pii-{tok}-unsealed", subject_id=f"UNSEALEDSUBJ{tok}", snapshot={"income": f"UNSEALEDVAL{tok}"}, risk=0.9)
    items.append((t.inference, b"unsealed", encode_many(s, "inference", [unsealed], sealed=False)[0], None))
    not_sealed = [f"UNSEALEDSUBJ{tok}", f"UNSEALEDVAL{tok}"]

    sink = ManagedProcess.in_data_dir(Path(s.data_dir), "sink", [LINEAGE_BIN, "sink"], env=settings_to_env(s))
    sink.start()
    try:
        with running_workers(s):
            with Emitter(EmitterConfig.from_settings(s), "sweep") as em:
                for ev in sdk_events:
                    em.emit(ev)
                with pytest.raises(InvalidEventError) as refused:  # incomplete: refused at emit, nothing spooled
                    em.emit_record("inference", schema_bad)
                assert f"PLANTEDSUBJ{tok}" not in str(refused.value) and f"PLANTEDVAL{tok}" not in str(refused.value)
                # passes the rules, fails the schema (a number for a string): kept, sealed, in rejected.ndjson
                em.emit_record("inference", inference_event(f"pii-{tok}-schema2", subject_id=f"PLANTEDSUBJ{tok}schema",
                                                            snapshot={"income": json.dumps(f"PLANTEDVAL{tok}schema")},
                                                            regulatory_class=5))
                em.flush(30)
            assert em.stats.failed == 1  # the schema-invalid one, kept in rejected.ndjson
            produce_all(s, items)
            wait_until(lambda: _post(s, "/api/v1/lineage", orjson.dumps(http_event)) in (200, 201), 60, "intake up")
            graph = read_topic(s, t.graph, 23, timeout=90)
            assert len(graph) == 23, worker_logs(s)[-3000:]
            dead = read_topic(s, t.deadletter, 3, timeout=30)
            assert sorted(dict(m.headers())["dlq.reason"] for m in dead) == [b"out_of_range", b"unsealed_pii", b"wrong_topic"]
            assert all(dict(m.headers()).get("dlq.sealed") == b"AES-256-GCM" for m in dead)
        deadline = time.monotonic() + 90
        dump = ""
        while time.monotonic() < deadline:
            try:
                dump = _clickhouse_dump(s)
            except OSError:
                dump = ""
            if all(e.prediction_id in dump for e in sdk_events) and f"pii-{tok}-ol" in dump and f"pii-{tok}-http" in dump:
                break
            time.sleep(1)
        assert all(e.prediction_id in dump for e in sdk_events), "graph rows did not reach ClickHouse: " + sink.tail(20)
    finally:
        sink.stop()

    # 1. ClickHouse: every table of the lineage database
    assert not _hits(planted + not_sealed, dump.encode())
    # 2. Topics: every topic of this deployment, the input topics included
    admin = AdminClient(s.kafka_common())
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(t.prefix + ".") or n.startswith(s.app_id)]
    assert {t.graph, t.deadletter, t.pii_hold, t.inference, t.training, t.openlineage, t.audit} <= set(names)
    for name in names:
        for m in read_to_end(s, name):
            blob = (m.key() or b"") + (m.value() or b"") + b"".join(k.encode() + (v or b"") for k, v in (m.headers() or []))
            assert not _hits(planted, blob), name
            # the unsealed event's plaintext is where its emitter put it, and nowhere after
            if not (name == t.inference and m.key() == b"unsealed"):
                assert not _hits(not_sealed, blob), name
    # 3. Spools and rejected files, logs, the encrypted store, Redis's files on disk
    spool = [p for p in (Path(s.data_dir) / "spool").rglob("*") if p.is_file()]
    assert any(p.name == "rejected.ndjson" for p in spool)
    logs = worker_logs(s)
    assert logs and not _hits(planted + not_sealed, logs.encode())
    segments = list((Path(s.data_dir) / "pii" / "segments").glob("*.seg"))
    assert segments
    for path in [*spool, *segments, *_redis_files(s)]:
        assert not _hits(planted + not_sealed, path.read_bytes()), path

    # decrypt (audited), erase, then decryption fails clearly
    rows = {orjson.loads(m.value())["inference"]["prediction_id"]: orjson.loads(m.value())["inference"]
            for m in graph if orjson.loads(m.value())["kind"] == "inference"}
    env = env_for(s)

    def get(pid: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LINEAGE_BIN, "snapshot", "get", rows[pid]["snapshot_pointer"], "--reason", "test", "--json"],
                              env=env, capture_output=True, text=True, timeout=60)

    first, second = sdk_events[0].prediction_id, sdk_events[1].prediction_id
    assert json.loads(get(first).stdout)["snapshot"]["values"]["income"] == json.dumps(values[0])  # typed values are JSON
    assert json.loads(get(f"pii-{tok}-ol").stdout)["snapshot"]["values"]["income"] == json.dumps(ol_value)
    assert json.loads(get(f"pii-{tok}-http").stdout)["snapshot"]["values"]["income"] == json.dumps(http_value)
    erased = subprocess.run([LINEAGE_BIN, "erase", "--subject", subjects[0], "--reason", "gdpr art. 17", "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert erased.returncode == 0 and json.loads(erased.stdout)["key_destroyed"] is True
    after = get(first)
    assert after.returncode == 1 and "was erased" in after.stderr and "can no longer be decrypted" in after.stderr
    assert get(second).returncode == 0  # other subjects unaffected

    # a dead letter is sealed under its subject's key: it opens (audited) until the subject is erased
    (bad_letter,) = [m for m in dead if dict(m.headers())["dlq.reason"] == b"out_of_range"]
    at = f"{bad_letter.partition()}@{bad_letter.offset()}"

    def open_letter() -> subprocess.CompletedProcess[str]:
        return subprocess.run([LINEAGE_BIN, "deadletters", "open", at, "--reason", "replay check", "--json"],
                              env=env, capture_output=True, text=True, timeout=60)

    opened = open_letter()
    assert opened.returncode == 0, opened.stderr
    original = base64.b64decode(json.loads(opened.stdout)["value_base64"])
    assert original == bad_raw and Codec.from_settings(s).decode(original).record["prediction_id"] == f"pii-{tok}-bad"
    listed = subprocess.run([LINEAGE_BIN, "deadletters", "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and {r["reason"] for r in json.loads(listed.stdout)} == {"out_of_range", "unsealed_pii", "wrong_topic"}
    assert not _hits(planted + not_sealed, listed.stdout.encode())
    assert subprocess.run([LINEAGE_BIN, "erase", "--subject", f"PLANTEDSUBJ{tok}bad", "--reason", "gdpr art. 17"],
                          env=env, capture_output=True, text=True, timeout=60).returncode == 0
    refused_letter = open_letter()
    assert refused_letter.returncode == 1 and "was erased" in refused_letter.stderr and "\n" not in refused_letter.stderr.strip()

    # every attempt, the refused ones too, reaches the query audit log through the sink; no PII does
    # (the test's own SQL through the API above is in the log too, as its admin key's)
    pii_actions = ("decrypt", "erase", "decrypt.deadletter")
    sink.start()
    try:
        audit = wait_until(lambda: _audit_log(env, 9, pii_actions), 90, "9 PII audit records in query_audit")
    finally:
        sink.stop()
    assert len(audit) == 9
    assert sorted(a["action"] for a in audit) == ["decrypt"] * 5 + ["decrypt.deadletter"] * 2 + ["erase"] * 2
    assert all(a["who"].startswith("local:") and (a["role"], a["via"]) == ("admin", "cli") for a in audit)
    erasure = next(a for a in audit if a["action"] == "erase" and a["what"] == json.loads(erased.stdout)["subject_ref"])
    assert erasure["reason"] == "gdpr art. 17" and erasure["details"] == {"key_destroyed": True}
    refused = [a for a in audit if a["outcome"].startswith("refused: subject") and "was erased" in a["outcome"]]
    assert sorted(a["action"] for a in refused) == ["decrypt", "decrypt.deadletter"]
    assert {a["what"] for a in refused} == {rows[first]["snapshot_pointer"], f"{t.deadletter}/{at.replace('@', '/')}"}
    assert all(a["rows"] == 0 for a in refused) and sorted(a["outcome"] for a in audit).count("ok") == 7
    assert not _hits(planted + not_sealed, json.dumps(audit).encode())
    stored = _store_dump(s, sorted(_AUDIT_TABLES))
    assert stored.count('"action":"decrypt"') == 5 and not _hits(planted + not_sealed, stored.encode())
    on_topic = [m.value() for m in read_to_end(s, t.audit)]
    assert sum(orjson.loads(v)["action"] in pii_actions for v in on_topic) == 9
    assert not [v for v in on_topic if _hits(planted + not_sealed, v)]
