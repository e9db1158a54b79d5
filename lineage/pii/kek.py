"""Key-holder secrets: the key-encryption key (KEK) and the pseudonym key. Only processes that wrap
and unwrap data keys import this module (stream workers, the keyholder, the administrator's CLI);
the sink never does.

The KEK comes from a pluggable :class:`KekProvider`:

* ``LINEAGE_KEK=base64:<32 bytes>`` or ``hex:<64 hex digits>``: a static key from configuration;
* ``LINEAGE_KEK=provider:<module>:<factory>``: a custom provider (e.g. a KMS client), built as
  ``factory(settings)`` and implementing :class:`KekProvider`;
* otherwise a local key file (``settings.kek_path``, 0600), created with a random key on first
  use. The file is a key ring: the first line is the current KEK (it wraps new data keys), any
  further lines are older KEKs that still unwrap while ``lineage keys rotate-kek`` re-wraps.

Every KEK has a key id (``kid``, derived from the key, never revealing it); wrapped data keys
carry it, so during a rotation old and new keys both unwrap.

The pseudonym key (subject references, HMAC-SHA256) is separate from the KEK, so references
survive a KEK rotation: ``LINEAGE_PSEUDONYM_KEY``, or its own 0600 file
(``settings.pseudonym_key_path``). When that file is missing but a KEK already exists, it is
created from the value the KEK derived in earlier versions, so existing references do not change.
"""
from __future__ import annotations

import base64
import binascii
import importlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lineage.exceptions import ConfigError
from lineage.pii.crypto import KEY_BYTES, NONCE_BYTES
from lineage.pii.exceptions import KekError, UnknownKek
from lineage.private_files import create_private_file, require_private

if TYPE_CHECKING:
    from lineage.settings import Settings

#: What a key id may look like (custom providers choose their own).
KID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PSEUDONYM_INFO = b"lineage subject-ref v1"


class KekProvider(Protocol):
    """Wraps and unwraps data keys under named KEKs (``kid``)."""

    name: str

    @property
    def current_id(self) -> str:
        """Key id of the KEK that wraps new data keys."""

    def key_ids(self) -> tuple[str, ...]:
        """Every key id that unwraps, the current one first."""

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        """``(kid, wrapped)`` under the current KEK."""

    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        """Unwrap under KEK ``kid`` (``""``: a data key wrapped before key ids existed).

        Raises :class:`UnknownKek` for a kid it does not hold, :class:`KekError` otherwise."""

    def reload(self) -> bool:
        """Re-read the keys from their source; True if they changed (False if they cannot)."""


def kek_id(key: bytes) -> str:
    """A KEK's public id: 16 hex digits derived from the key (one-way)."""
    return HKDF(SHA256(), 8, salt=None, info=b"lineage kek-id v1").derive(key).hex()


def derived_pseudonym_key(key: bytes) -> bytes:
    """The pseudonym key earlier versions derived from the KEK (kept for existing deployments)."""
    return HKDF(SHA256(), KEY_BYTES, salt=None, info=_PSEUDONYM_INFO).derive(key)


class LocalKek:
    """A ring of 256-bit KEKs held in process memory; AES-256-GCM wrap under the first (current) one."""

    def __init__(self, keys: Sequence[bytes], name: str = "local", source: Path | None = None) -> None:
        self.name = name
        self.source = source
        self._set(keys)

    def _set(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KekError("no KEK in the key ring")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise KekError(f"the KEK must be {KEY_BYTES} bytes, got {len(key)}")
        self._ring = [(kek_id(k), AESGCM(k)) for k in keys]
        self._keys = tuple(keys)

    @classmethod
    def from_file(cls, path: Path) -> LocalKek:
        """Read the key ring file, creating it (0600, one random key) if it does not exist.

        A file that group or others may read is refused (:class:`KekError`, one line)."""
        path = Path(path)
        if not path.exists():
            create_private_file(path, encode_ring([os.urandom(KEY_BYTES)]))
        return cls(read_ring(path), name=f"file:{path}", source=path)

    @property
    def current_id(self) -> str:
        return self._ring[0][0]

    def key_ids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self._ring)

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The raw keys, current first (for rotation and migration only)."""
        return self._keys

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        kid, aead = self._ring[0]
        nonce = os.urandom(NONCE_BYTES)
        return kid, nonce + aead.encrypt(nonce, dek, aad)

    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        candidates = [a for k, a in self._ring if k == kid] if kid else [a for _, a in self._ring]
        if not candidates:
            raise UnknownKek(kid)
        for aead in candidates:
            try:
                return aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
            except InvalidTag:
                continue
        raise KekError("the KEK cannot unwrap this data key (wrong KEK or tampered key)")

    def reload(self) -> bool:
        if self.source is None:
            return False
        keys = read_ring(self.source)
        if tuple(keys) == self._keys:
            return False
        self._set(keys)
        return True


def decode_key(spec: str, where: str) -> bytes:
    """``base64:...`` or ``hex:...`` (a bare value is base64) to 32 bytes."""
    scheme, sep, body = spec.strip().partition(":")
    if not sep:
        scheme, body = "base64", spec.strip()
    try:
        if scheme == "base64":
            key = base64.b64decode(body, validate=True)
        elif scheme == "hex":
            key = bytes.fromhex(body)
        else:
            raise KekError(f"{where}: a key must be 'base64:...', 'hex:...' or 'provider:module:factory'")
    except (binascii.Error, ValueError):
        raise KekError(f"{where}: key is not valid {scheme}") from None
    if len(key) != KEY_BYTES:
        raise KekError(f"{where}: a key must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def encode_ring(keys: Sequence[bytes]) -> bytes:
    return b"".join(base64.b64encode(k) + b"\n" for k in keys)


def read_private(path: Path, what: str) -> str:
    """A key file's text; refuses one open to other users (KekError, one line)."""
    try:
        require_private(path, what)
        return path.read_text()
    except OSError as exc:
        raise KekError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ConfigError as exc:
        raise KekError(str(exc)) from None


def read_ring(path: Path) -> list[bytes]:
    """The keys of a KEK file, current first; refuses a file open to other users."""
    lines = [ln.strip() for ln in read_private(Path(path), "KEK file").splitlines()]
    return [decode_key(ln, str(path)) for ln in lines if ln and not ln.startswith("#")]


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
        return LocalKek([decode_key(spec, "LINEAGE_KEK")], name="config")
    return LocalKek.from_file(settings.kek_path)


def pseudonym_key(settings: Settings) -> bytes:
    """The key subject references are made with (see the module docstring)."""
    if settings.pseudonym_key is not None:
        return decode_key(settings.pseudonym_key.get_secret_value(), "LINEAGE_PSEUDONYM_KEY")
    path = Path(settings.pseudonym_key_path)
    if not path.exists():
        create_private_file(path, base64.b64encode(_initial_pseudonym_key(settings)) + b"\n")
    return decode_key(read_private(path, "pseudonym key file").strip(), str(path))


def _initial_pseudonym_key(settings: Settings) -> bytes:
    """Derived from an existing KEK (references stay what they were), else random (a fresh install)."""
    if settings.kek is not None:
        spec = settings.kek.get_secret_value()
        if not spec.startswith("provider:"):
            return derived_pseudonym_key(decode_key(spec, "LINEAGE_KEK"))
        provider = kek_provider(settings)
        legacy = getattr(provider, "pseudonym_key", None)
        return bytes(legacy()) if callable(legacy) else os.urandom(KEY_BYTES)
    if Path(settings.kek_path).exists():
        # the oldest key of the ring is the one earlier versions derived references from
        return derived_pseudonym_key(read_ring(settings.kek_path)[-1])
    return os.urandom(KEY_BYTES)
