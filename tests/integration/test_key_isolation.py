"""Key isolation on a real pipeline started by `shell.processes.start_pipeline` (key holder, worker,
sink): the sink's environment holds no key-holder secret, even one exported in the parent's
environment; an investigator's decrypt through the sink API works, via the key holder, and is
audited; without the key holder the sink cannot decrypt at all."""
from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from factories import inference_event, training_event
from helpers import api_token, auth_headers, wait_until
from integration.sink_support import run_cli
from integration.worker_support import encode_many, free_port, produce_all
from lineage.pii.exceptions import IntegrityError, PiiError
from lineage.pii.holder import KeyholderClient, socket_path
from lineage.settings import KEY_HOLDER_SECRETS, key_holder_env_names, settings_to_env
from shell.processes import start_pipeline

pytestmark = [pytest.mark.integration]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)


def _post(settings: Any, path: str, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(settings.api_url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def _pointer(settings: Any, pid: str) -> tuple[str, str] | None:
    sql = f"SELECT snapshot_pointer, snapshot_sha256 FROM inference_lineage FINAL WHERE prediction_id = '{pid}'"
    req = urllib.request.Request(settings.api_url + "/api/sql", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Content-Type": "application/json", **auth_headers(settings)})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            rows = json.loads(resp.read())["rows"]
    except OSError:
        return None
    return (str(rows[0][0]), str(rows[0][1])) if rows and rows[0][0] else None


def test_settings_to_env_gives_key_holder_secrets_only_to_key_holders(settings_factory):
    kek, refs = "hex:" + os.urandom(32).hex(), "hex:" + os.urandom(32).hex()
    s = settings_factory(kek=SecretStr(kek), kek_file=Path("/k"), pseudonym_key=SecretStr(refs),
                         pseudonym_key_file=Path("/p"))
    plain = settings_to_env(s)
    assert not key_holder_env_names() & set(plain)
    assert not [v for v in plain.values() if kek in v or refs in v or v in ("/k", "/p")]
    holder = settings_to_env(s, key_holder=True)
    assert (holder["LINEAGE_KEK"], holder["LINEAGE_PSEUDONYM_KEY"]) == (kek, refs)
    assert (holder["LINEAGE_KEK_FILE"], holder["LINEAGE_PSEUDONYM_KEY_FILE"]) == ("/k", "/p")
    assert {f"LINEAGE_{n.upper()}" for n in KEY_HOLDER_SECRETS} == key_holder_env_names()


def test_the_sink_holds_no_key_and_decrypts_through_the_key_holder(settings_factory, make_topics, monkeypatch):
    kek, refs = os.urandom(32).hex(), os.urandom(32).hex()
    s = settings_factory(api_port=free_port(), kek=SecretStr("hex:" + kek))
    make_topics(s)
    # exported in the parent's own environment too: the sink must not inherit it
    monkeypatch.setenv("LINEAGE_PSEUDONYM_KEY", "hex:" + refs)
    procs = {p.name: p for p in start_pipeline(s)}
    try:
        assert set(procs) == {"keyholder", "worker-0", "sink"}
        sock = socket_path(s)
        wait_until(lambda: KeyholderClient(sock).ping(), 60, f"the key holder\n{procs['keyholder'].tail(10)}", 0.2)
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
        sink_pid = wait_until(procs["sink"].pid, 30, "the sink's pid")
        sink_env = _environ(sink_pid)
        assert sink_env.get("LINEAGE_KAFKA_BOOTSTRAP") == s.kafka_bootstrap  # we read the real thing
        assert not {k.upper() for k in sink_env} & key_holder_env_names()
        assert not [k for k, v in sink_env.items() if kek in v or refs in v]
        for name in ("keyholder", "worker-0"):  # and the key holders do have the keys
            env = _environ(wait_until(procs[name].pid, 30, f"{name}'s pid"))
            assert env["LINEAGE_KEK"] == "hex:" + kek and env["LINEAGE_PSEUDONYM_KEY"] == "hex:" + refs

        tok = uuid.uuid4().hex[:8]
        pid, secret = f"iso-{tok}", f"VAL{tok}"
        event = inference_event(pid, subject_id=f"subj-{tok}", snapshot={"income": secret}, risk=0.95)
        produce_all(s, [(s.topics.training, None, encode_many(s, "training", [training_event("credit", "7")])[0], None),
                        (s.topics.inference, pid.encode(), encode_many(s, "inference", [event])[0], None)])
        ptr, sha = wait_until(lambda: _pointer(s, pid), 180, f"the stored snapshot\n{procs['worker-0'].tail(10)}", 0.5)

        investigator = api_token(s, "investigator")
        path = f"/api/snapshots/{ptr}:decrypt"
        assert _post(s, path, {"reason": "case 7"}, api_token(s, "analyst"))[0] == 403
        status, body = _post(s, path, {"reason": "case 7", "sha256": sha}, investigator)
        assert status == 200 and body["snapshot"]["values"]["income"] == secret, body

        # the key holder answers only what it offers, and checks the digest itself
        client = KeyholderClient(sock)
        with pytest.raises(PiiError, match="offers no operation"):
            client.call({"op": "unwrap_data_key", "subject_ref": body["subject_ref"]})
        with pytest.raises(IntegrityError):
            client.open_snapshot(ptr, "0" * 64)

        # without the key holder the sink cannot decrypt: it has nothing to do it with
        procs["keyholder"].stop(timeout=30)
        status, body = _post(s, path, {"reason": "case 7"}, investigator)
        assert status == 503 and "key holder" in body["error"]

        def decrypts() -> list[dict[str, Any]]:
            out = run_cli(s, "audit", "log", "--action", "decrypt", "--since", "1h", "--json").stdout
            entries = [e for e in json.loads(out) if e["what"] == ptr]
            return entries if len(entries) >= 3 else []

        entries = wait_until(decrypts, 90, "the decrypt attempts in the audit log", 0.5)
        outcomes = sorted(e["outcome"].split(":")[0] for e in entries)
        assert outcomes == ["failed", "ok", "refused"], entries
        assert all(e["via"] == "api" for e in entries) and not [e for e in entries if secret in json.dumps(e)]
        ok = next(e for e in entries if e["outcome"] == "ok")
        assert ok["who"] and ok["role"] == "investigator" and ok["reason"] == "case 7"
    finally:
        for proc in procs.values():
            proc.stop(timeout=30)
    logs = "".join(p.read_text(errors="replace") for p in (Path(s.data_dir) / "logs").glob("*.log"))
    assert secret not in logs and kek not in logs and refs not in logs
