"""PII on the real stack: planted subject ids and feature values never appear in plaintext in any
ClickHouse table, any non-input topic, the snapshot store or the logs; snapshots decrypt (audited)
until `lineage erase`, after which they fail with a clear error."""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
import urllib.request
from confluent_kafka.admin import AdminClient

from helpers import wait_until
from lineage.settings import settings_to_env
from shell.stack.process import ManagedProcess
from helpers import auth_headers
from sinks.clickhouse.client import Store
from factories import inference_event, openlineage_event, training_event
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


def _openlineage_inference(pid: str, subject: str, value: str) -> bytes:
    """An OpenLineage run carrying a prediction (the ``inference`` run facet) with planted PII."""
    facet = {
        "model_name": "credit", "model_version": "7", "prediction_id": pid, "decision_type": "deny",
        "risk_score": 0.5, "subject_id": subject,
        "feature_snapshot": {"values": {"income": value}, "feature_set": {"name": "customer_fs", "version": "3"}},
    }
    return orjson.dumps(openlineage_event(producer="https://example.com/ol-scoring", job=("scoring", "credit-endpoint"),
                                          run_facets={"inference": facet}, inputs=()))


def test_no_plaintext_pii_anywhere_and_erasure(settings_factory, make_topics):
    s = settings_factory(api_port=free_port())
    make_topics(s)
    t = s.topics
    tok = uuid.uuid4().hex[:10]
    subjects = [f"PLANTEDSUBJ{tok}x{i}" for i in range(20)]
    values = [f"PLANTEDVAL{tok}x{i}" for i in range(20)]
    events = [
        inference_event(f"pii-{tok}-{i}", subject_id=subjects[i], snapshot={"income": values[i], "zip": f"Z{tok}"},
                        risk=0.95 if i < 10 else 0.1)
        for i in range(20)
    ]
    items = [(t.training, None, encode_many(s, "training", [training_event("credit", "7")])[0], None)]
    items += [(t.inference, e["prediction_id"].encode(), raw, None) for e, raw in zip(events, encode_many(s, "inference", events))]
    ol_subject, ol_value = f"PLANTEDSUBJ{tok}ol", f"PLANTEDVAL{tok}ol"
    items.append((t.openlineage, None, _openlineage_inference(f"pii-{tok}-ol", ol_subject, ol_value), None))
    bad = inference_event(f"pii-{tok}-bad", subject_id=f"PLANTEDSUBJ{tok}bad", snapshot={"income": f"PLANTEDVAL{tok}bad"}, risk=7.0)
    items.append((t.inference, b"bad", encode_many(s, "inference", [bad])[0], None))
    planted = [*subjects, *values, ol_subject, ol_value, f"PLANTEDSUBJ{tok}bad", f"PLANTEDVAL{tok}bad", f"Z{tok}"]

    sink = ManagedProcess.in_data_dir(Path(s.data_dir), "sink", [LINEAGE_BIN, "sink"], env=settings_to_env(s))
    sink.start()
    try:
        with running_workers(s):
            produce_all(s, items)
            graph = read_topic(s, t.graph, 22, timeout=90)
            assert len(graph) == 22, worker_logs(s)[-3000:]
            assert len(read_topic(s, t.deadletter, 1, timeout=30)) == 1
        deadline = time.monotonic() + 90
        dump = ""
        while time.monotonic() < deadline:
            try:
                dump = _clickhouse_dump(s)
            except OSError:
                dump = ""
            if all(e["prediction_id"] in dump for e in events) and f"pii-{tok}-ol" in dump:
                break
            time.sleep(1)
        assert all(e["prediction_id"] in dump for e in events), "graph rows did not reach ClickHouse: " + sink.tail(20)
    finally:
        sink.stop()

    # 1. ClickHouse: every table of the lineage database
    assert not [p for p in planted if p in dump]
    # 2. Topics: everything of this deployment except the two input topics (plaintext as emitted)
    admin = AdminClient(s.kafka_common())
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(t.prefix + ".") or n.startswith(s.app_id)]
    scanned = [n for n in names if n not in (t.inference, t.openlineage)]
    assert {t.graph, t.deadletter, t.pii_hold} <= set(scanned)
    for name in scanned:
        for m in read_to_end(s, name):
            blob = (m.key() or b"") + (m.value() or b"") + b"".join(k.encode() + (v or b"") for k, v in (m.headers() or []))
            assert not [p for p in planted if p.encode() in blob], name
    # 3. Logs (worker + sink) and 4. the encrypted store
    logs = worker_logs(s)
    assert logs and not [p for p in planted if p in logs]
    segments = list((Path(s.data_dir) / "pii" / "segments").glob("*.seg"))
    assert segments and not [p for p in planted for seg in segments if p.encode() in seg.read_bytes()]

    # decrypt (audited), erase, then decryption fails clearly
    rows = {orjson.loads(m.value())["inference"]["prediction_id"]: orjson.loads(m.value())["inference"]
            for m in graph if orjson.loads(m.value())["kind"] == "inference"}
    env = env_for(s)

    def get(pid: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LINEAGE_BIN, "snapshot", "get", rows[pid]["snapshot_pointer"], "--reason", "test", "--json"],
                              env=env, capture_output=True, text=True, timeout=60)

    first, second = events[0]["prediction_id"], events[1]["prediction_id"]
    assert json.loads(get(first).stdout)["snapshot"]["values"]["income"] == values[0]
    assert json.loads(get(f"pii-{tok}-ol").stdout)["snapshot"]["values"]["income"] == json.dumps(ol_value)
    erased = subprocess.run([LINEAGE_BIN, "erase", "--subject", subjects[0], "--reason", "gdpr art. 17", "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert erased.returncode == 0 and json.loads(erased.stdout)["key_destroyed"] is True
    after = get(first)
    assert after.returncode == 1 and "was erased" in after.stderr and "can no longer be decrypted" in after.stderr
    assert get(second).returncode == 0  # other subjects unaffected

    # every attempt, the refused one too, reaches the query audit log through the sink; no PII does
    # (the test's own SQL through the API above is in the log too, as its admin key's)
    pii_actions = ("decrypt", "erase")
    sink.start()
    try:
        audit = wait_until(lambda: _audit_log(env, 5, pii_actions), 90, "5 PII audit records in query_audit")
    finally:
        sink.stop()
    assert len(audit) == 5 and sorted(a["action"] for a in audit) == ["decrypt"] * 4 + ["erase"]
    assert all(a["who"].startswith("local:") and (a["role"], a["via"]) == ("admin", "cli") for a in audit)
    erasure = next(a for a in audit if a["action"] == "erase")
    assert erasure["reason"] == "gdpr art. 17" and erasure["details"] == {"key_destroyed": True}
    assert erasure["what"] == json.loads(erased.stdout)["subject_ref"]
    refused = [a for a in audit if a["outcome"].startswith("refused: subject") and "was erased" in a["outcome"]]
    assert len(refused) == 1 and refused[0]["what"] == rows[first]["snapshot_pointer"] and refused[0]["rows"] == 0
    assert sorted(a["outcome"] for a in audit).count("ok") == 4
    assert not [p for p in planted if p in json.dumps(audit)]
    stored = _store_dump(s, sorted(_AUDIT_TABLES))
    assert stored.count('"action":"decrypt"') == 4 and not [p for p in planted if p in stored]
    on_topic = [m.value() for m in read_to_end(s, t.audit)]
    assert sum(orjson.loads(v)["action"] in pii_actions for v in on_topic) == 5 and not [p for p in planted for v in on_topic if p.encode() in v]
