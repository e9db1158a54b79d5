"""The encrypted snapshot store: append-only segment files of sealed snapshots, addressed by pointer.

A sealed snapshot is a small JSON document (subject ref, prediction id, nonce, AES-256-GCM
ciphertext) and never contains plaintext. Each writer process appends to its own segment file
(``<root>/<writer>-<start>-<n>.seg``), so several workers never interleave writes; a batch is
one ``write`` + ``fsync``. A pointer is ``pii-store:v1/<segment>/<offset>/<length>``; the lineage
keeps the pointer and the SHA-256 of the stored bytes (a digest of the ciphertext, not of the
plaintext: a plaintext digest of low-entropy PII could be reversed by guessing).
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag

from lineage.pii.crypto import open_sealed, seal
from lineage.pii.exceptions import IntegrityError, PointerError
from lineage.pii.keys import DataKeys
from lineage.settings import Settings

POINTER_PREFIX = "pii-store:v1/"
_POINTER_RE = re.compile(r"^pii-store:v1/(?P<seg>[A-Za-z0-9._-]+\.seg)/(?P<off>[0-9]+)/(?P<len>[0-9]+)$")
_LEN = struct.Struct(">I")


def _aad(subject_ref: str, prediction_id: str) -> bytes:
    return f"snap|{subject_ref}|{prediction_id}".encode()


def seal_snapshot(dek: bytes, subject_ref: str, prediction_id: str, snapshot: Any) -> bytes:
    """Encrypt one feature snapshot under the subject's data key; returns the sealed document."""
    nonce, ct = seal(dek, orjson.dumps(snapshot, option=orjson.OPT_SORT_KEYS), _aad(subject_ref, prediction_id))
    return orjson.dumps(
        {
            "v": 1,
            "alg": "AES-256-GCM",
            "subject_ref": subject_ref,
            "prediction_id": prediction_id,
            "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(ct).decode(),
        }
    )


def sealed_subject(sealed: bytes) -> str:
    try:
        return str(orjson.loads(sealed)["subject_ref"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise IntegrityError("not a sealed snapshot document") from None


def open_snapshot(keys: DataKeys, sealed: bytes) -> Any:
    """Decrypt a sealed snapshot; :class:`~sinks.pii.exceptions.SubjectErased` after erasure."""
    try:
        doc = orjson.loads(sealed)
        ref, pid = doc["subject_ref"], doc["prediction_id"]
        nonce, ct = base64.b64decode(doc["nonce"]), base64.b64decode(doc["ct"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise IntegrityError("not a sealed snapshot document") from None
    dek = keys.get(ref)
    try:
        return orjson.loads(open_sealed(dek, nonce, ct, _aad(ref, pid)))
    except InvalidTag:
        raise IntegrityError("snapshot failed authentication (tampered, or sealed under another key)") from None


class LocalOpener:
    """Opens stored snapshots with the data keys this process holds (key-holding processes only)."""

    def __init__(self, keys: DataKeys, store: SnapshotStore) -> None:
        self.keys = keys
        self.store = store

    def open_snapshot(self, pointer: str, sha256: str | None) -> tuple[str, Any]:
        blob = self.store.read(pointer, sha256)
        return sealed_subject(blob), open_snapshot(self.keys, blob)


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True, slots=True)
class Stored:
    pointer: str
    sha256: str


class SnapshotStore:
    """Append-only segment files under ``root``."""

    def __init__(self, root: Path, writer_id: str = "cli", max_segment_bytes: int = 256 << 20) -> None:
        self.root = Path(root)
        self.writer_id = re.sub(r"[^A-Za-z0-9._-]", "_", writer_id)
        self.max_segment_bytes = max_segment_bytes
        self._segment: str | None = None
        self._seq = 0
        self._started = int(time.time() * 1000)

    @classmethod
    def from_settings(cls, settings: Settings, writer_id: str = "cli") -> SnapshotStore:
        return cls(Path(settings.data_dir) / "pii" / "segments", writer_id)

    def _current(self, incoming: int) -> str:
        if self._segment is not None:
            size = (self.root / self._segment).stat().st_size
            if size + incoming <= self.max_segment_bytes or size == 0:
                return self._segment
        self._seq += 1
        self._segment = f"{self.writer_id}-{self._started}-{self._seq:06d}.seg"
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        return self._segment

    def append_many(self, blobs: Sequence[bytes]) -> list[Stored]:
        """Append sealed snapshots durably (one write, one fsync); pointers in input order."""
        if not blobs:
            return []
        segment = self._current(sum(len(b) + _LEN.size for b in blobs))
        path = self.root / segment
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            offset = os.fstat(fd).st_size
            chunks, out = [], []
            for blob in blobs:
                chunks.append(_LEN.pack(len(blob)))
                chunks.append(blob)
                offset += _LEN.size
                out.append(Stored(f"{POINTER_PREFIX}{segment}/{offset}/{len(blob)}", digest(blob)))
                offset += len(blob)
            data = b"".join(chunks)
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
        return out

    def read(self, pointer: str, sha256: str | None = None) -> bytes:
        """The sealed bytes a pointer names, checked against ``sha256`` when given."""
        m = _POINTER_RE.match(pointer.strip())
        if m is None:
            raise PointerError(f"not a snapshot pointer: {pointer!r} (expected {POINTER_PREFIX}<segment>/<offset>/<length>)")
        path = self.root / m["seg"]
        offset, length = int(m["off"]), int(m["len"])
        try:
            with open(path, "rb") as fh:
                fh.seek(offset - _LEN.size)
                head = fh.read(_LEN.size)
                blob = fh.read(length)
        except OSError:
            raise PointerError(f"pointer {pointer} names a segment that does not exist here ({path})") from None
        if len(head) != _LEN.size or _LEN.unpack(head)[0] != length or len(blob) != length:
            raise PointerError(f"pointer {pointer} does not address a stored snapshot")
        if sha256 is not None and digest(blob) != sha256.lower():
            raise IntegrityError(f"stored snapshot does not match digest {sha256}")
        return blob
