"""Key-holder secrets without Redis: the KEK ring and its key ids, the pseudonym key (and how an
existing deployment keeps its subject references), key files open to others refused, and that the sink's code never loads the KEK module."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from lineage.pii.exceptions import KekError, UnknownKek
from lineage.pii.kek import LocalKek, encode_ring, kek_id, kek_provider, pseudonym_key, read_ring
from lineage.pii.keys import pack, unpack

REPO = Path(__file__).resolve().parents[2]


def _settings(data_dir: Path, **kw: Any) -> Any:
    """The key settings alone (the unit tier starts no stack; what a child's environment gets is
    checked in the integration tier, on real settings)."""
    values = {"kek": None, "kek_file": None, "pseudonym_key": None, "pseudonym_key_file": None, **kw}
    return SimpleNamespace(
        **values,
        kek_path=values["kek_file"] or data_dir / "keys" / "kek.key",
        pseudonym_key_path=values["pseudonym_key_file"] or data_dir / "keys" / "pseudonym.key",
    )


def _old_derivation(kek: bytes) -> bytes:
    """How subject references were keyed before the pseudonym key existed (HKDF of the KEK)."""
    return HKDF(SHA256(), 32, salt=None, info=b"lineage subject-ref v1").derive(kek)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_kek_file_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys" / "kek.key"
    LocalKek.from_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(mode)
    with pytest.raises(KekError, match="chmod 600"):
        LocalKek.from_file(path)
    with pytest.raises(KekError, match="open to other users"):
        kek_provider(_settings(tmp_path))


def test_a_pseudonym_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    pseudonym_key(s)
    assert s.pseudonym_key_path.stat().st_mode & 0o777 == 0o600
    s.pseudonym_key_path.chmod(0o644)
    with pytest.raises(KekError, match="chmod 600"):
        pseudonym_key(s)


def test_wrapped_keys_name_their_kek_and_a_ring_unwraps_old_and_new(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    a, ring = LocalKek([old]), LocalKek([new, old])
    kid, wrapped = a.wrap(b"k" * 32, b"aad")
    assert kid == kek_id(old) != kek_id(new) and len(kid) == 16
    assert ring.unwrap(kid, wrapped, b"aad") == b"k" * 32
    assert ring.wrap(b"k" * 32, b"aad")[0] == kek_id(new)
    assert ring.unwrap("", wrapped, b"aad") == b"k" * 32  # a key wrapped before key ids: every key is tried
    with pytest.raises(UnknownKek):
        LocalKek([new]).unwrap(kid, wrapped, b"aad")
    assert unpack(pack(kid, wrapped)) == (kid, wrapped)
    assert unpack(wrapped) == ("", wrapped)


def test_a_file_kek_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "kek.key"
    kek = LocalKek.from_file(path)
    first = kek.current_id
    assert kek.reload() is False
    new = os.urandom(32)
    path.write_bytes(encode_ring([new, *read_ring(path)]))
    assert kek.reload() is True and kek.key_ids() == (kek_id(new), first)


def test_existing_deployments_keep_their_subject_refs(tmp_path: Path) -> None:
    old = os.urandom(32)
    (tmp_path / "keys").mkdir()
    fd = os.open(tmp_path / "keys" / "kek.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, base64.b64encode(old) + b"\n")
    os.close(fd)
    s = _settings(tmp_path)
    assert pseudonym_key(s) == _old_derivation(old)  # created from what the KEK derived
    assert s.pseudonym_key_path.stat().st_mode & 0o777 == 0o600
    assert pseudonym_key(s) == _old_derivation(old)  # and read back from then on


def test_a_kek_from_configuration_also_keeps_its_refs_and_a_fresh_install_gets_a_random_key(tmp_path: Path) -> None:
    kek = os.urandom(32)
    configured = _settings(tmp_path / "a", kek=SecretStr("hex:" + kek.hex()))
    assert pseudonym_key(configured) == _old_derivation(kek)
    fresh = _settings(tmp_path / "b")
    key = pseudonym_key(fresh)
    assert len(key) == 32 and key != _old_derivation(LocalKek.from_file(fresh.kek_path).keys[0])
    given = os.urandom(32)
    assert pseudonym_key(_settings(tmp_path / "c", pseudonym_key=SecretStr("base64:" + base64.b64encode(given).decode()))) == given
    assert not (tmp_path / "c" / "keys" / "pseudonym.key").exists()


def test_the_sink_process_never_loads_the_kek_module() -> None:
    # what `lineage sink` imports: the whole CLI (every command module) and the sink service
    code = (
        "import sys\n"
        "from shell.cli.app import _mount\n"
        "_mount()\n"
        "import shell.cli.sink, shell.sink_service, sinks.api_server, sinks.pii.operations\n"
        "bad = sorted(m for m in sys.modules if m in ('lineage.pii.kek', 'shell.kek_rotation', 'shell.keyholder'))\n"
        "print(','.join(bad))\n"
        "assert 'lineage.pii.holder' in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
