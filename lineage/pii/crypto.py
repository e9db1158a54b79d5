"""Crypto primitives of the pipeline, in one place: AES-256-GCM sealing and key wrapping.

The key-encryption key (KEK) comes from a pluggable :class:`KekProvider`:

* ``LINEAGE_KEK=base64:<32 bytes>`` or ``hex:<64 hex digits>``: a static key from configuration;
* ``LINEAGE_KEK=provider:<module>:<factory>``: a custom provider (e.g. a KMS client), built as
  ``factory(settings)``;
* otherwise a local key file (``settings.kek_path``), created 0600 with a random key on first use.

Used by the worker (sealing snapshots and dead letters), the snapshot store and the data keys.
"""
from __future__ import annotations

import base64
import binascii
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lineage.exceptions import ConfigError
from lineage.pii.exceptions import KekError
from lineage.private_files import require_private

if TYPE_CHECKING:
    from lineage.settings import Settings

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
            require_private(path, "KEK file")
            text = path.read_text().strip()
        except OSError as exc:
            raise KekError(f"cannot read KEK file {path}: {exc.strerror}") from None
        except ConfigError as exc:
            raise KekError(str(exc)) from None
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


def kek_provider(settings: Settings) -> KekProvider:
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


def seal(dek: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM: (nonce, ciphertext+tag)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(dek).encrypt(nonce, plaintext, aad)


def open_sealed(dek: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; raises ``InvalidTag`` on a wrong key or tampering."""
    return AESGCM(dek).decrypt(nonce, ciphertext, aad)
