"""Erasure that erases, on the real stack: after `lineage erase` the subject's stored snapshots,
held records and sealed dead letters fail to decrypt with SubjectErased, `--json` counts them, and
the wrapped data key's bytes are gone from every file in Redis's data directory."""
from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from factories import inference_event, training_event
from helpers import wait_until
from integration.sink_support import env_for
from integration.worker_support import LINEAGE_BIN, encode_many, produce_all, read_topic, running_workers, worker_logs
from lineage.keyspace import KeySpace
from lineage.pii.crypto import seal
from lineage.pii.exceptions import SubjectErased
from lineage.pii.kek import derived_pseudonym_key, pseudonym_key, read_ring
from lineage.pii.keys import DataKeys, unpack
from lineage.pii.store import SnapshotStore, open_snapshot
from shell.keyholder import Keyholder
from sinks.pii.erasure import bytes_on_disk
from lineage.deadletters import dead_letter_headers, open_dead_letter, seal_aad

pytestmark = [pytest.mark.integration]


def _redis_dir(r: redis.Redis) -> Path:
    root = Path(r.config_get("dir")["dir"])
    assert root.is_dir(), f"Redis's data directory {root} is not on this machine"
    return root


def _lineage(s: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINEAGE_BIN, *args], env=env_for(s), capture_output=True, text=True, timeout=180)


def test_erase_destroys_the_key_on_disk_and_everything_sealed_under_it_fails_clearly(settings_factory, make_topics):
    s = settings_factory()
    make_topics(s)
    t, tok = s.topics, uuid.uuid4().hex[:8]
    gone, kept = f"ERASEME{tok}", f"KEEPME{tok}"
    events = [
        inference_event(f"er-{tok}-{i}", subject_id=gone, snapshot={"income": f"V{tok}{i}"}, risk=0.95 if i < 2 else 0.1)
        for i in range(3)
    ] + [inference_event(f"er-{tok}-k", subject_id=kept, snapshot={"income": f"K{tok}"}, risk=0.95)]
    items = [(t.training, None, encode_many(s, "training", [training_event("credit", "7")])[0], None)]
    items += [(t.inference, e["prediction_id"].encode(), raw, None) for e, raw in zip(events, encode_many(s, "inference", events))]
    with running_workers(s):
        produce_all(s, items)
        graph = read_topic(s, t.graph, 5, timeout=120)
        assert len(graph) == 5, worker_logs(s)[-3000:]
        held = read_topic(s, t.pii_hold, 4, timeout=60)
    rows = {r["inference"]["prediction_id"]: r["inference"] for r in (orjson.loads(m.value()) for m in graph)
            if r["kind"] == "inference"}
    ref = rows[f"er-{tok}-0"]["subject_ref"]
    stored = [p for p, r in rows.items() if r["subject_ref"] == ref and r["snapshot_pointer"]]
    assert len(stored) >= 2  # the two consequential predictions at least

    r = redis.Redis.from_url(s.redis_url)
    keys = DataKeys.from_settings(s, r)
    assert keys.subject_ref(gone) == ref
    # a fresh install: the worker made a random pseudonym key of its own (0600), not one derived from the KEK
    assert s.pseudonym_key_path.stat().st_mode & 0o777 == 0o600
    assert pseudonym_key(s) != derived_pseudonym_key(read_ring(s.kek_path)[0])
    # a dead letter of this subject, sealed under their key (dlq.key names it, as the worker writes them)
    origin = (t.inference, 0, 12345)
    nonce, ct = seal(keys.get(ref), b"raw event of " + gone.encode(), seal_aad(*origin))
    dlq_headers = dead_letter_headers([], "bad_id", "test", *origin, key_ref=ref)
    produce_all(s, [(t.deadletter, b"x", nonce + ct, dlq_headers)])
    holder = Keyholder(keys, SnapshotStore.from_settings(s))
    dlq_request = {"op": "open_dead_letter", "value": base64.b64encode(nonce + ct).decode(),
                   "headers": {k: base64.b64encode(v).decode() for k, v in dlq_headers}}
    opened = holder.handle(dlq_request)
    assert opened["ok"] and base64.b64decode(opened["value"]) == b"raw event of " + gone.encode()

    wrapped = r.get(KeySpace.of(s).dek(ref))
    assert wrapped is not None
    secret_part = unpack(wrapped)[1]  # nonce + ciphertext of the data key: random, unique bytes
    root = _redis_dir(r)
    # the test could fail: the bytes are on disk before (AOF fsync is once a second)
    wait_until(lambda: bytes_on_disk(root, secret_part), 30, "the wrapped key in Redis's files")

    first = rows[stored[0]]["snapshot_pointer"]
    before = _lineage(s, "snapshot", "get", first, "--reason", "check", "--json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["snapshot"]["values"]["income"] == f"V{tok}{stored[0].rsplit('-', 1)[1]}"

    res = _lineage(s, "erase", "--subject", gone, "--reason", "erasure request", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["subject_ref"] == ref and out["key_destroyed"] is True
    assert out["unreadable"] == {"stored_snapshots": len(stored), "held_records": 3, "dead_letters": 1}
    assert out["persistence"]["aof_rewritten"] is True and out["persistence"]["verified_absent"] is True
    assert gone not in res.stdout

    # on disk: the wrapped key is in no file of Redis's directory (checked here, not taken from the command)
    assert bytes_on_disk(root, secret_part) == []
    assert r.get(KeySpace.of(s).dek(ref)) is None

    # stored snapshots: a clear error on the CLI
    for pid in stored:
        after = _lineage(s, "snapshot", "get", rows[pid]["snapshot_pointer"], "--reason", "check")
        assert after.returncode == 1 and f"subject {ref} was erased" in after.stderr
        assert "can no longer be decrypted" in after.stderr and "Traceback" not in after.stderr
    # held records: every one of the subject's fails with SubjectErased; the other subject's opens
    mine = [h for h in (orjson.loads(m.value()) for m in held) if h["inference"]["subject_ref"] == ref]
    assert len(mine) == 3
    for h in mine:
        with pytest.raises(SubjectErased):
            open_snapshot(keys, h["sealed"].encode())
    other = next(h for h in (orjson.loads(m.value()) for m in held) if h["inference"]["subject_ref"] != ref)
    assert open_snapshot(keys, other["sealed"].encode())["values"] == {"income": f"K{tok}"}
    # the sealed dead letter: its key is gone, for the key holder too
    with pytest.raises(SubjectErased):
        open_dead_letter(keys, nonce + ct, dict(dlq_headers))
    refused = holder.handle(dlq_request)
    assert (refused["ok"], refused["error"], refused["subject_ref"]) == (False, "SubjectErased", ref)
    assert "was erased" in refused["message"] and "value" not in refused
    # no key is ever made again for the subject
    assert keys.get_or_create([ref]) == {ref: None}
