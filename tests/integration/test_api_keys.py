"""API keys against the real Redis: a token works once created, only its SHA-256 is stored, and
rotation, revocation and expiry each stop the old token; the CLI prints the token once and records
every key operation (refused ones too, never a token) in the audit log."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis

from integration.worker_support import read_to_end
from lineage.keyspace import KeySpace
from lineage.settings import Settings, settings_to_env
from sinks.access.keys import ApiKeys
from sinks.access.roles import Action, Role, allows
from sinks.exceptions import AccessError

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(test_settings: Settings) -> Iterator[ApiKeys]:
    client = redis.Redis.from_url(test_settings.redis_url)
    yield ApiKeys(client, KeySpace.of(test_settings))
    client.close()


def _stored_bytes(keys: ApiKeys) -> bytes:
    """Every key name and value under the deployment's access prefix."""
    out = b""
    for k in keys.redis.scan_iter(f"{keys.space.prefix}:access:*"):
        out += k + b"\n"
        out += (keys.redis.get(k) if keys.redis.type(k) == b"string" else b"".join(
            a + b + b"\n" for a, b in keys.redis.hgetall(k).items()))
    return out


def test_create_authenticate_and_only_a_digest_is_stored(keys: ApiKeys) -> None:
    token, info = keys.create("ana", "analyst", 3600, now=1_000.0)
    assert info.role is Role.ANALYST and info.expires_at == 4_600.0
    got = keys.authenticate(token, now=2_000.0)
    assert got is not None and got.name == "ana" and got.role is Role.ANALYST
    stored = _stored_bytes(keys)
    assert b"ana" in stored and token.encode() not in stored and token[3:].encode() not in stored
    assert keys.authenticate(token, now=4_600.0) is None  # expired
    assert keys.authenticate(token + "x") is None and keys.authenticate("not-a-token") is None
    with pytest.raises(AccessError, match="exists"):
        keys.create("ana", "admin")
    assert keys.authenticate(token, now=2_000.0).role is Role.ANALYST  # the refused create changed nothing


def test_rotate_and_revoke_stop_the_old_token(keys: ApiKeys) -> None:
    old, _ = keys.create("ingest", "emitter")
    new, info = keys.rotate("ingest")
    assert info.role is Role.EMITTER and new != old
    assert keys.authenticate(old) is None and keys.authenticate(new).name == "ingest"
    keys.revoke("ingest")
    assert keys.authenticate(new) is None
    assert [i.name for i in keys.list()] == []
    with pytest.raises(AccessError, match="no key named"):
        keys.revoke("ingest")


def test_a_revocation_racing_a_rotation_leaves_no_working_token(keys: ApiKeys) -> None:
    """Whichever runs first, after both no token of the key works and no record is left nameless
    (a rotation that read the key before a revocation must not write it back)."""
    for i in range(100):
        name = f"race{i}"
        tokens = [keys.create(name, "analyst")[0]]
        failures: list[AccessError] = []
        start = threading.Barrier(2)

        def rotate() -> None:
            start.wait()
            with contextlib.suppress(AccessError):  # the revocation came first
                tokens.append(keys.rotate(name)[0])

        def revoke() -> None:
            start.wait()
            try:
                keys.revoke(name)
            except AccessError as exc:  # the key exists whichever runs first: a revocation never misses it
                failures.append(exc)

        threads = [threading.Thread(target=rotate), threading.Thread(target=revoke)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures and [t for t in tokens if keys.authenticate(t) is not None] == [], f"round {i}"
    assert keys.list() == []
    assert list(keys.redis.scan_iter(keys.space.api_key("*"))) == []


def test_bad_names_and_roles_are_refused(keys: ApiKeys) -> None:
    for name in ("", "a b", "x" * 65, "../etc"):
        with pytest.raises(AccessError):
            keys.create(name, "analyst")
    with pytest.raises(AccessError, match="role"):
        keys.create("ok", "root")
    assert keys.list() == []


def test_roles_are_least_privilege() -> None:
    assert allows(Role.EMITTER, Action.INTAKE) and not allows(Role.EMITTER, Action.QUERY)
    assert allows(Role.ANALYST, Action.QUERY) and not allows(Role.ANALYST, Action.READ_ALL)
    assert allows(Role.AUDITOR, Action.AUDIT_LOG) and not allows(Role.AUDITOR, Action.DECRYPT)
    assert allows(Role.INVESTIGATOR, Action.DECRYPT) and not allows(Role.INVESTIGATOR, Action.KEYS)
    assert all(allows(Role.ADMIN, a) for a in Action)


def test_cli_prints_the_token_once_and_list_never(test_settings: Settings) -> None:
    env = {**os.environ, **settings_to_env(test_settings)}
    name = f"svc-{uuid.uuid4().hex[:6]}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "shell", "keys", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    made = run("create", "--role", "auditor", "--name", name, "--expires", "90d", "--json")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["name"] == name and out["role"] == "auditor" and out["token"].startswith("lk_")
    listed = run("list", "--json")
    assert listed.returncode == 0 and out["token"] not in listed.stdout
    assert [k["name"] for k in json.loads(listed.stdout)] == [name]
    bad = run("create", "--role", "auditor", "--name", name)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    rotated = run("rotate", name, "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert run("revoke", name).returncode == 0

    # the audit topic (what the sink stores in query_audit) holds each operation, never a token
    values = [m.value() for m in read_to_end(test_settings, test_settings.topics.audit)]
    tokens = [out["token"], json.loads(rotated.stdout)["token"]]
    assert not [t for t in tokens for v in values if t.encode() in v or t[3:].encode() in v]
    records = [orjson.loads(v) for v in values]
    assert [(r["action"], r["what"], r["who"].startswith("local:"), r["via"]) for r in records] == [
        (a, name, True, "cli") for a in ("key.create", "key.create", "key.rotate", "key.revoke")
    ]
    assert [r["outcome"] for r in records][::2] == ["ok", "ok"] and records[3]["outcome"] == "ok"
    assert records[1]["outcome"].startswith("refused: ") and "exists" in records[1]["outcome"]
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(out["expires_at"]))
    assert records[0]["params"] == {"role": "auditor", "expires": expires} and records[0]["rows"] == 1
