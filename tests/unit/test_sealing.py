"""Sealing at the source: the envelope, the key ring, and the SDK writing no PII anywhere on disk."""
from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from factories import sdk_event
from lineage.exceptions import ConfigError
from lineage.pii import sealing
from lineage.pii.sealing import KeyRing, Sealer, SealError, open_pii, seal_pii, seal_record
from producers.config import EmitterConfig
from producers.emitter import Emitter
from producers.exceptions import InvalidEventError, OpenLineageError, SealingError
from producers.openlineage import from_openlineage, seal_openlineage

SUBJECT = "PLANTED-subject-8812@example.org"
SECRET = "PLANTED-income-77231"


@pytest.fixture()
def ring(tmp_path: Path) -> KeyRing:
    ring = KeyRing.under(tmp_path / "keys")
    ring.ensure()
    return ring


def test_round_trip_and_the_envelope_holds_no_plaintext(ring: KeyRing) -> None:
    sealer = Sealer(ring.published() or "")
    env = seal_pii(sealer, "p-1", SUBJECT, {"values": {"income": json.dumps(SECRET)}, "feature_set": None})
    assert env.startswith("ls1.") and SUBJECT not in env and SECRET not in env
    assert open_pii(ring.unsealer(), "p-1", env) == (SUBJECT, {"values": {"income": json.dumps(SECRET)}, "feature_set": None})


def test_envelope_is_bound_to_its_prediction_and_to_its_bytes(ring: KeyRing) -> None:
    sealer, unsealer = Sealer(ring.published() or ""), ring.unsealer()
    env = seal_pii(sealer, "p-1", SUBJECT, None)
    with pytest.raises(SealError, match="moved to another prediction"):
        open_pii(unsealer, "p-2", env)
    raw = bytearray(env.encode())
    raw[-3] = ord("A") if raw[-3] != ord("A") else ord("B")
    with pytest.raises(SealError) as info:
        open_pii(unsealer, "p-1", raw.decode())
    assert info.value.reason == "unsealable"
    for junk in ("", "ls1.", "ls1.!!!", "plain text"):
        with pytest.raises(SealError):
            open_pii(unsealer, "p-1", junk)


def test_a_key_the_pipeline_does_not_hold_is_named(ring: KeyRing, tmp_path: Path) -> None:
    other = KeyRing.under(tmp_path / "elsewhere")
    env = seal_pii(Sealer(other.ensure()), "p-1", SUBJECT, None)
    with pytest.raises(SealError) as info:
        open_pii(ring.unsealer(), "p-1", env)
    assert info.value.reason == "seal_key_unknown"


def test_ephemeral_key_is_renewed_and_old_envelopes_still_open(ring: KeyRing, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealing, "ROTATE_AFTER_MESSAGES", 3)
    sealer, unsealer = Sealer(ring.published() or ""), ring.unsealer()
    envs = [seal_pii(sealer, f"p-{i}", f"s-{i}", None) for i in range(10)]
    ephemeral = {sealing.base64.urlsafe_b64decode(e[4:])[8:40] for e in envs}
    assert len(ephemeral) >= 3  # renewed every 3 seals
    assert [open_pii(unsealer, f"p-{i}", e)[0] for i, e in enumerate(envs)] == [f"s-{i}" for i in range(10)]


def test_rotation_keeps_old_keys_and_publishes_the_new_one(ring: KeyRing) -> None:
    first = ring.published()
    old_env = seal_pii(Sealer(first or ""), "p-1", SUBJECT, None)
    second = ring.create()
    assert ring.published() == second != first and ring.public_key() == second
    assert open_pii(ring.unsealer(), "p-1", old_env)[0] == SUBJECT


def test_a_seal_key_file_open_to_others_is_refused(ring: KeyRing) -> None:
    (path,) = ring.directory.glob("*.key")
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ring.unsealer()


def test_a_bad_public_key_is_a_one_line_error() -> None:
    for bad in ("", "x25519:", "x25519:abc", "rsa:AAAA"):
        with pytest.raises(ConfigError) as info:
            Sealer(bad)
        assert "\n" not in str(info.value)


def test_seal_record_leaves_nothing_in_the_clear(ring: KeyRing) -> None:
    rec = {"prediction_id": "p-1", "subject_id": SUBJECT, "feature_snapshot": {"values": {"income": 5}, "feature_set": None}}
    seal_record(Sealer(ring.published() or ""), rec)
    assert rec["subject_id"] == "" and rec["feature_snapshot"] is None
    assert open_pii(ring.unsealer(), "p-1", rec["sealed"]) == (SUBJECT, {"values": {"income": "5"}, "feature_set": None})
    odd = {"prediction_id": "p-2", "subject_id": 42, "feature_snapshot": SECRET}
    seal_record(Sealer(ring.published() or ""), odd)
    assert odd["subject_id"] is None and SECRET not in orjson.dumps(odd).decode()  # the schema check names it


def _offline(tmp_path: Path, ring: KeyRing | None) -> EmitterConfig:
    return EmitterConfig(bootstrap_servers="127.0.0.1:1", spool_dir=tmp_path / "spool", metrics_interval_s=0,
                         seal_public_key=ring.published() if ring else None)


def _files_hold(root: Path, *needles: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{n} in {path}" for n in needles if n.encode() in data]
    return hits


def test_the_spool_never_holds_plaintext_pii(tmp_path: Path, ring: KeyRing) -> None:
    em = Emitter(_offline(tmp_path, ring), "sealed")
    try:
        typed = sdk_event("inference", subject_id=SUBJECT, prediction_id="p-typed")
        typed.feature_snapshot.values["income"] = SECRET
        em.emit(typed)
        with pytest.raises(InvalidEventError) as refused:  # incomplete: refused where it is made
            em.emit_record("inference", {"prediction_id": "p-raw", "subject_id": SUBJECT,
                                         "feature_snapshot": {"values": {"income": json.dumps(SECRET)}}})
        assert SUBJECT not in str(refused.value) and SECRET not in str(refused.value)
        em.spool.sync()
    finally:
        em.close(timeout=0)
    assert typed.subject_id == SUBJECT  # the caller's object is not changed
    assert not _files_hold(tmp_path / "spool", SUBJECT, SECRET)


def test_emitting_inference_without_a_public_key_is_refused(tmp_path: Path) -> None:
    em = Emitter(_offline(tmp_path, None), "nokey")
    try:
        with pytest.raises(SealingError, match="seal_public_key"):
            em.emit(sdk_event("inference", subject_id=SUBJECT))
        em.emit(sdk_event("dataset"))  # events without PII need no key
    finally:
        em.close(timeout=0)
    assert not _files_hold(tmp_path / "spool", SUBJECT)


def test_openlineage_events_are_sealed_before_they_are_sent(ring: KeyRing) -> None:
    event = {
        "eventType": "COMPLETE", "eventTime": "2026-06-15T10:00:00Z", "producer": "https://x/scoring",
        "run": {"runId": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a70", "facets": {"inference": {
            "model_name": "m", "model_version": "1", "prediction_id": "p-ol", "decision_type": "deny",
            "risk_score": 0.9, "subject_id": SUBJECT, "feature_snapshot": {"values": {"income": SECRET}}}}},
        "job": {"namespace": "svc", "name": "score"},
    }
    sealed = seal_openlineage(event, ring.published() or "")
    assert SUBJECT not in json.dumps(sealed) and SECRET not in json.dumps(sealed)
    assert event["run"]["facets"]["inference"]["subject_id"] == SUBJECT  # the original is left alone
    kind, record = from_openlineage(sealed)
    assert kind == "inference" and record["subject_id"] == "" and record["feature_snapshot"] is None
    assert open_pii(ring.unsealer(), "p-ol", record["sealed"]) == (SUBJECT, {"values": {"income": json.dumps(SECRET)}, "feature_set": None})
    both = json.loads(json.dumps(sealed))
    both["run"]["facets"]["inference"]["subject_id"] = SUBJECT
    with pytest.raises(OpenLineageError, match="in place of subject_id"):
        from_openlineage(both)


def test_the_public_key_file_is_not_secret_but_the_private_keys_are(ring: KeyRing) -> None:
    assert ring.public_path.exists() and ring.published() == ring.public_key()
    assert all(p.stat().st_mode & 0o077 == 0 for p in ring.directory.glob("*.key"))
    assert os.stat(ring.directory).st_mode & 0o077 == 0


def test_seal_cli_prints_and_rotates_the_public_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from shell.cli.app import run

    monkeypatch.setenv("LINEAGE_DATA_DIR", str(tmp_path))
    assert run(["seal", "public-key", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    ring = KeyRing.under(tmp_path / "keys")
    assert first["public_key"] == ring.published() and len(first["key_ids"]) == 1
    assert run(["seal", "rotate", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["public_key"] != first["public_key"] and len(second["key_ids"]) == 2
    assert run(["seal", "public-key"]) == 0 and capsys.readouterr().out.strip() == second["public_key"]


def test_deadletters_open_names_a_bad_position_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from shell.cli.app import run

    assert run(["deadletters", "open", "zero@x", "--reason", "r"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PARTITION@OFFSET" in err and "Traceback" not in err
