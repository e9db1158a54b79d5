"""Envelope keys: one AES-256 data key per data subject, kept in Redis wrapped by the KEK.

The key-encryption key (KEK) comes from a pluggable :class:`KekProvider`:

* ``LINEAGE_KEK=base64:<32 bytes>`` or ``hex:<64 hex digits>``: a static key from configuration;
* ``LINEAGE_KEK=provider:<module>:<factory>``: a custom provider (e.g. a KMS client), built as
  ``factory(settings)``;
* otherwise a local key file (``settings.kek_path``), created 0600 with a random key on first use.

Subject ids never leave the pipeline: :meth:`DataKeys.subject_ref` is a keyed hash (HMAC-SHA256
under a key derived from the KEK), stable across workers and replays. Erasure
(:meth:`DataKeys.erase`) deletes the wrapped data key and leaves a tombstone, atomically, so no
worker can re-create a key for an erased subject.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sinks.pii.exceptions import DataKeyMissing, KekError, SubjectErased

KEY_BYTES = 32
NONCE_BYTES = 12


class KekProvider(Protocol):
    """Wraps and unwraps data keys; derives the pseudonymisation key."""

    name: str

    def wrap(self, dek: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...

    def pseudonym_key(self) -> bytes: ...


class LocalKek:
    """A 256-bit KEK held in process memory (from a file or from configuration); AES-256-GCM wrap."""

    def __init__(self, key: bytes, name: str = "local") -> None:
        if len(key) != KEY_BYTES:
            raise KekError(f"the KEK must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._pseudonym = HKDF(SHA256(), KEY_BYTES, salt=None, info=b"lineage subject-ref v1").derive(key)
        self.name = name

    @classmethod
    def from_file(cls, path: Path) -> LocalKek:
        """Read the key file, creating it (mode 0600, random key) if it does not exist."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first; read theirs
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise KekError(f"cannot read KEK file {path}: {exc.strerror}") from None
        return cls(_decode_key(text if ":" in text else f"base64:{text}", str(path)), name=f"file:{path}")

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, dek, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise KekError("the KEK cannot unwrap this data key (wrong KEK or tampered key)") from None

    def pseudonym_key(self) -> bytes:
        return self._pseudonym


def _decode_key(spec: str, where: str) -> bytes:
    scheme, _, body = spec.partition(":")
    try:
        if scheme == "base64":
            return base64.b64decode(body, validate=True)
        if scheme == "hex":
            return bytes.fromhex(body)
    except (binascii.Error, ValueError):
        raise KekError(f"{where}: KEK is not valid {scheme}") from None
    raise KekError(f"{where}: KEK must be 'base64:...', 'hex:...' or 'provider:module:factory'")


def kek_provider(settings: Any) -> KekProvider:
    """The configured KEK provider (see the module docstring)."""
    if settings.kek is not None:
        spec = settings.kek.get_secret_value()
        if spec.startswith("provider:"):
            _, module, factory = (spec.split(":", 2) + ["", ""])[:3]
            try:
                provider: KekProvider = getattr(importlib.import_module(module), factory)(settings)
            except (ImportError, AttributeError) as exc:
                raise KekError(f"cannot load KEK provider {module}:{factory}: {exc}") from None
            return provider
        return LocalKek(_decode_key(spec, "LINEAGE_KEK"), name="config")
    return LocalKek.from_file(settings.kek_path)


def redis_prefix(settings: Any) -> str:
    """Redis key namespace of one pipeline deployment (its topic prefix)."""
    return f"lineage:{settings.topics.prefix}"


# Atomic: never create a key for an erased subject; return whichever key won the race.
_GET_OR_CREATE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""

_ERASE = """
local existed = redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return existed
"""


class DataKeys:
    """Per-subject data keys in Redis (sync client), wrapped by the KEK."""

    def __init__(self, redis: Any, kek: KekProvider, prefix: str) -> None:
        self.redis = redis
        self.kek = kek
        self.prefix = prefix
        self._get_or_create = redis.register_script(_GET_OR_CREATE)
        self._erase = redis.register_script(_ERASE)

    def subject_ref(self, subject_id: str) -> str:
        """Keyed pseudonym of a subject id (128-bit hex); the id itself is never stored."""
        return hmac.new(self.kek.pseudonym_key(), subject_id.encode(), hashlib.sha256).hexdigest()[:32]

    def _dek_key(self, ref: str) -> str:
        return f"{self.prefix}:pii:dek:{ref}"

    def _tomb_key(self, ref: str) -> str:
        return f"{self.prefix}:pii:erased:{ref}"

    def _aad(self, ref: str) -> bytes:
        return f"dek|{self.prefix}|{ref}".encode()

    def get_or_create(self, refs: Iterable[str]) -> dict[str, bytes | None]:
        """Data key per subject ref, creating missing ones; None for erased subjects."""
        wanted = list(dict.fromkeys(refs))
        found: dict[str, bytes | None] = {}
        if not wanted:
            return found
        existing = self.redis.mget([self._dek_key(r) for r in wanted])
        pipe = self.redis.pipeline(transaction=False)
        missing = []
        for ref, wrapped in zip(wanted, existing):
            if wrapped is not None:
                found[ref] = self.kek.unwrap(wrapped, self._aad(ref))
            else:
                missing.append(ref)
                self._get_or_create(
                    keys=[self._dek_key(ref), self._tomb_key(ref)],
                    args=[self.kek.wrap(os.urandom(KEY_BYTES), self._aad(ref))],
                    client=pipe,
                )
        if missing:
            for ref, wrapped in zip(missing, pipe.execute()):
                found[ref] = None if wrapped is None else self.kek.unwrap(wrapped, self._aad(ref))
        return found

    def get(self, ref: str) -> bytes:
        """The subject's data key; :class:`SubjectErased` after erasure."""
        wrapped, tomb = self.redis.mget([self._dek_key(ref), self._tomb_key(ref)])
        if tomb is not None:
            raise SubjectErased(ref, tomb.decode(errors="replace"))
        if wrapped is None:
            raise DataKeyMissing(f"no data key for subject {ref}")
        return self.kek.unwrap(wrapped, self._aad(ref))

    def erase(self, ref: str) -> bool:
        """Destroy the subject's data key (crypto-shredding); True if a key existed."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return bool(self._erase(keys=[self._dek_key(ref), self._tomb_key(ref)], args=[stamp]))

    def erased(self, ref: str) -> bool:
        return bool(self.redis.exists(self._tomb_key(ref)))


def seal(dek: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM: (nonce, ciphertext+tag)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(dek).encrypt(nonce, plaintext, aad)


def open_sealed(dek: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; raises ``InvalidTag`` on a wrong key or tampering."""
    return AESGCM(dek).decrypt(nonce, ciphertext, aad)
