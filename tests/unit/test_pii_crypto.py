"""Envelope crypto and the segment store (no Redis: data keys are passed in)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from lineage.pii.crypto import open_sealed, seal
from lineage.pii.kek import LocalKek, kek_provider
from lineage.pii.exceptions import IntegrityError, KekError, PointerError
from lineage.pii.store import SnapshotStore, digest, seal_snapshot, sealed_subject
from lineage.deadletters import open_dead_letter, seal_aad


def test_kek_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.key"
    a = LocalKek.from_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    b = LocalKek.from_file(path)
    dek = os.urandom(32)
    assert b.unwrap(*a.wrap(dek, b"aad"), b"aad") == dek
    assert a.current_id == b.current_id


def test_wrong_kek_or_aad_cannot_unwrap(tmp_path: Path) -> None:
    a, b = LocalKek([os.urandom(32)]), LocalKek([os.urandom(32)])
    kid, wrapped = a.wrap(os.urandom(32), b"subject-1")
    with pytest.raises(KekError):
        b.unwrap(kid, wrapped, b"subject-1")
    with pytest.raises(KekError):
        b.unwrap("", wrapped, b"subject-1")
    with pytest.raises(KekError):
        a.unwrap(kid, wrapped, b"subject-2")


def test_provider_from_settings(tmp_path: Path) -> None:
    key = os.urandom(32)
    cfg = SimpleNamespace(kek=SecretStr("hex:" + key.hex()), kek_path=tmp_path / "unused")
    assert kek_provider(cfg).name == "config"
    assert not (tmp_path / "unused").exists()
    with pytest.raises(KekError):
        kek_provider(SimpleNamespace(kek=SecretStr("hex:abcd"), kek_path=None))
    with pytest.raises(KekError):
        kek_provider(SimpleNamespace(kek=SecretStr("provider:no.such.module:make"), kek_path=None))
    assert kek_provider(SimpleNamespace(kek=None, kek_path=tmp_path / "k")).name.startswith("file:")


def test_sealed_snapshot_has_no_plaintext_and_opens_with_its_key() -> None:
    dek = os.urandom(32)
    blob = seal_snapshot(dek, "ref1", "pred-9", {"values": {"income": "PLANTED-123"}})
    assert b"PLANTED-123" not in blob and sealed_subject(blob) == "ref1"
    keys = SimpleNamespace(get=lambda ref: dek)
    from lineage.pii.store import open_snapshot

    assert open_snapshot(keys, blob) == {"values": {"income": "PLANTED-123"}}  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        open_snapshot(SimpleNamespace(get=lambda ref: os.urandom(32)), blob)  # type: ignore[arg-type]
    tampered = blob.replace(b'"pred-9"', b'"pred-8"')
    with pytest.raises(IntegrityError):
        open_snapshot(keys, tampered)  # type: ignore[arg-type]


def test_store_append_read_and_digest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, "w1", max_segment_bytes=200)
    blobs = [b"a" * 100, b"b" * 150, b"c" * 10]
    stored = store.append_many(blobs[:2]) + store.append_many(blobs[2:])
    assert [store.read(s.pointer, s.sha256) for s in stored] == blobs
    assert len({s.pointer.split("/")[1] for s in stored}) >= 2  # a full segment rotates between batches
    assert all(s.sha256 == digest(b) for s, b in zip(stored, blobs))
    with pytest.raises(IntegrityError):
        store.read(stored[0].pointer, digest(b"other"))
    with pytest.raises(PointerError):
        store.read("pii-store:v1/nope.seg/4/10")
    with pytest.raises(PointerError):
        store.read("garbage")
    bad = stored[0].pointer.rsplit("/", 1)[0] + "/99"
    with pytest.raises(PointerError):
        store.read(bad)
    assert stat.S_IMODE(os.stat(tmp_path / stored[0].pointer.split("/")[1]).st_mode) == 0o600


def test_sealed_dead_letter_round_trip() -> None:
    key = os.urandom(32)
    nonce, ct = seal(key, b"original", seal_aad("t.inference", 3, 17))
    headers = {"dlq.topic": b"t.inference", "dlq.partition": b"3", "dlq.offset": b"17",
               "dlq.sealed": b"AES-256-GCM", "dlq.key": b"subject-ref-1"}
    assert open_dead_letter({"subject-ref-1": key}, nonce + ct, headers) == b"original"
    assert open_sealed(key, nonce, ct, seal_aad("t.inference", 3, 17)) == b"original"


def test_a_kek_file_open_to_other_users_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.key"
    LocalKek.from_file(path)  # created 0600
    assert (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o640)
    with pytest.raises(KekError, match="chmod 600"):
        LocalKek.from_file(path)
