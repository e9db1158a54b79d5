"""`lineage keys rotate-kek` on the real stack with a worker running: every data key is re-wrapped
(a key from before key ids too), the old KEK unwraps none of them any more, snapshots still
decrypt, subject references do not change (an existing deployment keeps the refs its KEK used
to derive), the running worker picks up the new KEK by itself, an interrupted rotation is
finished by running it again, and a KEK file open to the group is refused at start."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from factories import inference_event, training_event
from integration.sink_support import env_for
from integration.worker_support import LINEAGE_BIN, encode_many, produce_all, read_topic, running_workers, worker_logs
from lineage.keyspace import KeySpace
from lineage.pii.exceptions import KekError, UnknownKek
from lineage.pii.kek import LocalKek, derived_pseudonym_key, encode_ring, kek_id, read_ring
from lineage.pii.keys import DataKeys, unpack

pytestmark = [pytest.mark.integration]


def _lineage(s: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINEAGE_BIN, *args], env=env_for(s), capture_output=True, text=True, timeout=300)


def _write_private(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, content)
    os.close(fd)


def _kids(r: redis.Redis, space: KeySpace) -> dict[str, str]:
    head = space.dek("")
    return {k.decode()[len(head):]: unpack(r.get(k))[0] for k in r.scan_iter(match=head + "*")}


def _events(s: Any, tok: str, subjects: list[str]) -> list[tuple[str, bytes | None, bytes, None]]:
    evs = [inference_event(f"rot-{tok}-{i}", subject_id=subj, snapshot={"income": f"V{tok}{i}"}, risk=0.95)
           for i, subj in enumerate(subjects)]
    return [(s.topics.inference, e["prediction_id"].encode(), raw, None) for e, raw in zip(evs, encode_many(s, "inference", evs))]


def test_rotate_kek_rewraps_every_key_and_retires_the_old_one(settings_factory, make_topics):
    s = settings_factory()
    make_topics(s)
    space, tok = KeySpace.of(s), uuid.uuid4().hex[:8]
    r = redis.Redis.from_url(s.redis_url)
    # an existing deployment: a KEK file from before, no pseudonym key file, one data key from before key ids
    old = os.urandom(32)
    _write_private(s.kek_path, base64.b64encode(old) + b"\n")
    legacy_ref = f"legacy{tok}"
    r.set(space.dek(legacy_ref), LocalKek([old]).wrap(os.urandom(32), f"dek|{space.prefix}|{legacy_ref}".encode())[1])
    subjects = [f"subj-{tok}-{i}" for i in range(5)]
    expected_refs = {x: hmac.new(derived_pseudonym_key(old), x.encode(), hashlib.sha256).hexdigest()[:32] for x in subjects}

    with running_workers(s):
        produce_all(s, [(s.topics.training, None, encode_many(s, "training", [training_event("credit", "7")])[0], None),
                        *_events(s, tok, subjects)])
        graph = read_topic(s, s.topics.graph, 6, timeout=120)
        assert len(graph) == 6, worker_logs(s)[-3000:]
        rows = [orjson.loads(m.value())["inference"] for m in graph if orjson.loads(m.value())["kind"] == "inference"]
        assert sorted(x["subject_ref"] for x in rows) == sorted(expected_refs.values())  # refs as the KEK derived them
        before = _kids(r, space)
        assert set(before) == {legacy_ref, *expected_refs.values()}
        assert set(before.values()) == {kek_id(old), ""}

        res = _lineage(s, "keys", "rotate-kek", "--json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        new_id = out["new_kek_id"]
        assert new_id != kek_id(old) and out["retired_kek_ids"] == [kek_id(old)] and out["resumed"] is False
        assert (out["rewrapped"], out["already_current"]) == (len(before), 0)

        after = _kids(r, space)
        assert set(after) == set(before) and set(after.values()) == {new_id}
        assert [kek_id(k) for k in read_ring(s.kek_path)] == [new_id]  # the old KEK is gone from the file
        old_kek = LocalKek([old])
        for ref in after:
            kid, wrapped = unpack(r.get(space.dek(ref)))
            with pytest.raises(UnknownKek):
                old_kek.unwrap(kid, wrapped, f"dek|{space.prefix}|{ref}".encode())
            with pytest.raises(KekError):
                old_kek.unwrap("", wrapped, f"dek|{space.prefix}|{ref}".encode())

        # data still decrypts, references did not change
        got = _lineage(s, "snapshot", "get", rows[0]["snapshot_pointer"], "--reason", "rotation check", "--json")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["snapshot"]["values"]["income"].startswith(f"V{tok}")
        keys = DataKeys.from_settings(s, r)
        assert {x: keys.subject_ref(x) for x in subjects} == expected_refs

        # the running worker picked the new KEK up: new keys are wrapped under it, old subjects still served
        more = [f"subj-{tok}-new", subjects[0]]
        produce_all(s, _events(s, tok + "b", more))
        assert len(read_topic(s, s.topics.graph, 8, timeout=120)) == 8, worker_logs(s)[-3000:]
        assert _kids(r, space)[keys.subject_ref(more[0])] == new_id
    assert "KekError" not in worker_logs(s)

    # an interrupted rotation (the file already holds the ring new2, new) is finished by running it again
    new2 = os.urandom(32)
    _write_private(s.kek_path, encode_ring([new2, *read_ring(s.kek_path)]))
    other = s.data_dir / "other.key"
    _write_private(other, base64.b64encode(os.urandom(32)) + b"\n")
    refused = _lineage(s, "keys", "rotate-kek", "--new-key-file", str(other))
    assert refused.returncode == 1 and "unfinished" in refused.stderr and "Traceback" not in refused.stderr
    res = _lineage(s, "keys", "rotate-kek", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["resumed"] is True and out["new_kek_id"] == kek_id(new2) and out["retired_kek_ids"] == [new_id]
    assert out["rewrapped"] == len(_kids(r, space)) == 7
    assert set(_kids(r, space).values()) == {kek_id(new2)}

    # a KEK file the group may read is refused at start, by a key holder and by the CLI alike
    s.kek_path.chmod(0o640)
    for args in (("keyholder",), ("keys", "rotate-kek")):
        res = _lineage(s, *args)
        assert res.returncode == 1 and "open to other users" in res.stderr and "chmod 600" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
