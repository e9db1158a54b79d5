"""Talking to the key holder: the one process that unwraps data keys on behalf of the sink.

The sink never holds the KEK. When an authorised, audited request needs plaintext (an
investigator's snapshot decrypt, a dead-letter decrypt), the sink asks ``lineage keyholder``
over a Unix-domain socket (``<data_dir>/run/keyholder.sock``, mode 0600, same OS user only). The
key holder offers exactly these operations and nothing else:

* ``open_snapshot``: a stored snapshot named by pointer **and** its SHA-256 (as the lineage has it);
* ``open_dead_letter``: a sealed dead-letter record (value + its ``dlq.*`` headers);
* ``ping``: is it there (answers nothing else).

Frames are a 4-byte big-endian length and a JSON document, one request and one answer each. An
error comes back as ``{"ok": false, "error": <kind>, "message": ...}`` and is raised here as the
same :mod:`lineage.pii.exceptions` class, so callers treat a remote refusal like a local one.
"""
from __future__ import annotations

import base64
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from lineage.pii.exceptions import (
    DataKeyMissing,
    IntegrityError,
    KekError,
    KeyholderUnavailable,
    PiiError,
    PointerError,
    SubjectErased,
)

if TYPE_CHECKING:
    from lineage.settings import Settings

FRAME = struct.Struct(">I")
MAX_FRAME = 64 << 20
SOCKET_NAME = "keyholder.sock"

#: Errors that cross the socket by name (anything else arrives as PiiError).
ERRORS: dict[str, type[PiiError]] = {
    "SubjectErased": SubjectErased,
    "DataKeyMissing": DataKeyMissing,
    "PointerError": PointerError,
    "IntegrityError": IntegrityError,
    "KekError": KekError,
}


def socket_path(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve() / "run" / SOCKET_NAME


class SnapshotOpener(Protocol):
    """Whoever can turn a stored snapshot (pointer + digest) into plaintext."""

    def open_snapshot(self, pointer: str, sha256: str) -> tuple[str, Any]:
        """``(subject_ref, snapshot)``; raises a :class:`PiiError` (e.g. SubjectErased)."""


@dataclass(frozen=True)
class OpenedDeadLetter:
    key_ref: str
    value: bytes


def encode_frame(doc: Mapping[str, Any]) -> bytes:
    body = orjson.dumps(doc)
    return FRAME.pack(len(body)) + body


def read_frame(sock: socket.socket) -> dict[str, Any]:
    head = _read_exact(sock, FRAME.size)
    (size,) = FRAME.unpack(head)
    if size > MAX_FRAME:
        raise PiiError(f"key holder frame of {size} bytes is over the limit")
    doc = orjson.loads(_read_exact(sock, size))
    if not isinstance(doc, dict):
        raise PiiError("key holder sent a frame that is not a JSON object")
    return doc


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise KeyholderUnavailable("the key holder closed the connection mid-answer")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def raise_error(answer: Mapping[str, Any]) -> None:
    kind, message = str(answer.get("error", "")), str(answer.get("message", "key holder refused"))
    if kind == "SubjectErased":
        raise SubjectErased(str(answer.get("subject_ref", "?")), answer.get("erased_at"))
    raise ERRORS.get(kind, PiiError)(message)


class KeyholderClient:
    """A client of ``lineage keyholder`` (one connection per call; thread-safe)."""

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyholderClient:
        return cls(socket_path(settings))

    def call(self, request: Mapping[str, Any]) -> dict[str, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                raise KeyholderUnavailable(
                    f"the key holder does not answer at {self.path} ({exc.strerror or exc}); "
                    "start it with `lineage keyholder` (the pipeline starts one)"
                ) from None
            try:
                sock.sendall(encode_frame(request))
                answer = read_frame(sock)
            except (OSError, orjson.JSONDecodeError) as exc:
                raise KeyholderUnavailable(f"the key holder at {self.path} failed to answer ({exc})") from None
        finally:
            sock.close()
        if not answer.get("ok"):
            raise_error(answer)
        return answer

    def ping(self) -> bool:
        try:
            return bool(self.call({"op": "ping"}).get("ok"))
        except PiiError:
            return False

    def open_snapshot(self, pointer: str, sha256: str) -> tuple[str, Any]:
        answer = self.call({"op": "open_snapshot", "pointer": pointer, "sha256": sha256})
        return str(answer["subject_ref"]), answer["snapshot"]

    def open_dead_letter(self, value: bytes, headers: Mapping[str, bytes]) -> OpenedDeadLetter:
        answer = self.call({
            "op": "open_dead_letter",
            "value": base64.b64encode(value).decode(),
            "headers": {k: base64.b64encode(v).decode() for k, v in headers.items()},
        })
        return OpenedDeadLetter(str(answer["key_ref"]), base64.b64decode(answer["value"]))
