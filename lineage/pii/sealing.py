"""Sealing at the source: PII is encrypted for the pipeline before it leaves the emitting process.

Hybrid public-key encryption: X25519 key agreement, HKDF-SHA256, AES-256-GCM (``cryptography``).

* The pipeline holds X25519 private keys (the *seal keys*) in ``<data_dir>/keys/seal/<kid>.key``
  (0600); only the stream workers and the local administrator's tools read them.
* Emitters (SDK, HTTP intake) hold only the public key, given as ``x25519:<base64>``
  (``LINEAGE_SEAL_PUBLIC_KEY``, ``EmitterConfig.seal_public_key``, ``lineage seal public-key``).
* An emitter makes an ephemeral key pair, agrees a session key with the pipeline's public key
  and seals each event's subject id and feature snapshot under it with a fresh random nonce.
  The ephemeral pair is renewed every :data:`ROTATE_AFTER_MESSAGES` seals or
  :data:`ROTATE_AFTER_S` seconds, so the expensive key agreement is not paid per event.
* The envelope is text (it travels in Avro strings, JSON facets and the spool)::

      ls1.<base64url( kid[8] | ephemeral public key[32] | nonce[12] | ciphertext+tag )>

  ``kid`` is the first 8 bytes of SHA-256 of the recipient public key, so several seal keys can
  be live during a rotation. The associated data binds the envelope to its prediction id: a
  sealed blob moved onto another prediction fails to open.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from lineage.exceptions import ConfigError, LineageError
from lineage.private_files import create_private_file
from lineage.private_files import require_private

PREFIX = "ls1."
PUBLIC_SCHEME = "x25519:"
KID_BYTES = 8
_EPK = 32
_NONCE = 12
_HEAD = KID_BYTES + _EPK + _NONCE
_INFO = b"lineage seal v1"
ROTATE_AFTER_MESSAGES = 1 << 20
ROTATE_AFTER_S = 600.0
#: Kafka header naming the seal key an event's PII is sealed for.
HEADER_KEY_ID = "lineage.seal.kid"


class SealError(LineageError):
    """An envelope that cannot be opened: not an envelope, an unknown key id, or failed authentication."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def key_id(public: X25519PublicKey) -> bytes:
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).digest()[:KID_BYTES]


def public_key_text(public: X25519PublicKey) -> str:
    """``x25519:<base64>``: how the public key is configured on emitters."""
    return PUBLIC_SCHEME + base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_public_key(text: str) -> X25519PublicKey:
    """Inverse of :func:`public_key_text`; :class:`ConfigError` with a one-line reason."""
    body = text.strip()
    if not body.startswith(PUBLIC_SCHEME):
        raise ConfigError(f"a seal public key looks like '{PUBLIC_SCHEME}<base64>', got {body[:12]!r}...")
    try:
        raw = base64.b64decode(body[len(PUBLIC_SCHEME):], validate=True)
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ConfigError("the seal public key is not 32 bytes of valid base64") from None


def _aad(prediction_id: str) -> bytes:
    return b"lineage-pii|v1|" + prediction_id.encode()


def _session(shared: bytes, epk: bytes, recipient: bytes) -> AESGCM:
    return AESGCM(HKDF(SHA256(), 32, salt=epk + recipient, info=_INFO).derive(shared))


class Sealer:
    """Seals for one recipient public key. Thread-safe; one per emitter."""

    def __init__(self, public_key: str | X25519PublicKey) -> None:
        self.recipient = parse_public_key(public_key) if isinstance(public_key, str) else public_key
        self._recipient_raw = self.recipient.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = key_id(self.recipient)
        self.kid_hex = self.kid.hex()
        self._lock = threading.Lock()
        self._renew()

    def _renew(self) -> None:
        eph = X25519PrivateKey.generate()
        epk = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        aead = _session(eph.exchange(self.recipient), epk, self._recipient_raw)
        # Nonces are a random 4-byte prefix and a per-session counter (the deterministic GCM
        # construction): unique under the session key without a system call per seal. One tuple
        # swapped atomically; ``next()`` of the shared counter is atomic, so concurrent seals never
        # share a nonce, even with a session that was just replaced.
        self._state = (self.kid + epk, aead, itertools.count(), os.urandom(4), time.monotonic() + ROTATE_AFTER_S)

    def seal(self, plaintext: bytes, prediction_id: str) -> str:
        head, aead, counter, prefix, until = self._state
        n = next(counter)
        if n >= ROTATE_AFTER_MESSAGES or time.monotonic() > until:
            with self._lock:
                if self._state[1] is aead:
                    self._renew()
            head, aead, counter, prefix, until = self._state
            n = next(counter)
        nonce = prefix + n.to_bytes(8, "big")
        return PREFIX + base64.urlsafe_b64encode(head + nonce + aead.encrypt(nonce, plaintext, _aad(prediction_id))).decode()


class Unsealer:
    """Opens envelopes sealed for any of the given private keys (current and retired ones)."""

    def __init__(
        self,
        private_keys: Iterable[X25519PrivateKey],
        cache_size: int = 4096,
        reload: Callable[[], Iterable[X25519PrivateKey]] | None = None,
    ) -> None:
        self._keys: dict[bytes, tuple[X25519PrivateKey, bytes]] = {}
        self._add(private_keys)
        if not self._keys:
            raise ConfigError("no seal private key to open sealed events with")
        self._sessions: OrderedDict[bytes, AESGCM] = OrderedDict()
        self._cache_size = cache_size
        self._reload = reload
        self._reloaded_at = 0.0

    def _add(self, private_keys: Iterable[X25519PrivateKey]) -> None:
        for k in private_keys:
            pub = k.public_key()
            self._keys[key_id(pub)] = (k, pub.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def _lookup(self, kid: bytes) -> tuple[X25519PrivateKey, bytes] | None:
        """The private key of ``kid``; a key added since start (a rotation) is picked up, at most once a second."""
        found = self._keys.get(kid)
        if found is None and self._reload is not None and time.monotonic() - self._reloaded_at > 1.0:
            self._reloaded_at = time.monotonic()
            self._add(self._reload())
            found = self._keys.get(kid)
        return found

    @property
    def key_ids(self) -> list[str]:
        return sorted(k.hex() for k in self._keys)

    def open(self, envelope: str, prediction_id: str) -> bytes:
        if not isinstance(envelope, str) or not envelope.startswith(PREFIX):
            raise SealError("unsealable", "not a sealed envelope (expected 'ls1.' text)")
        try:
            blob = base64.urlsafe_b64decode(envelope[len(PREFIX):])
        except ValueError:
            raise SealError("unsealable", "the envelope is not valid base64") from None
        if len(blob) < _HEAD + 16:
            raise SealError("unsealable", "the envelope is truncated")
        kid, epk = blob[:KID_BYTES], blob[KID_BYTES:KID_BYTES + _EPK]
        aead = self._sessions.get(kid + epk)
        if aead is None:
            found = self._lookup(kid)
            if found is None:
                raise SealError("seal_key_unknown", f"sealed for key {kid.hex()}, which this pipeline does not hold")
            private, recipient = found
            try:
                shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
            except ValueError:
                raise SealError("unsealable", "the envelope's ephemeral key is invalid") from None
            aead = self._sessions[kid + epk] = _session(shared, epk, recipient)
            if len(self._sessions) > self._cache_size:
                self._sessions.popitem(last=False)
        try:
            return aead.decrypt(blob[_HEAD - _NONCE:_HEAD], blob[_HEAD:], _aad(prediction_id))
        except InvalidTag:
            raise SealError("unsealable", "the envelope failed authentication (tampered, or moved to another prediction)") from None


# --- the PII of an inference event ------------------------------------------------------------


def snapshot_record(snapshot: Any, typed: bool) -> Any:
    """A feature snapshot in the Avro record's shape (values JSON-encoded, as the schema wants).

    ``typed``: from the SDK's classes, where every value is JSON-encoded (a string ``"DE"``
    becomes ``"\\"DE\\""``); raw records may already carry JSON text, left as it is.
    """
    if snapshot is None:
        return None
    if not isinstance(snapshot, Mapping):
        if hasattr(snapshot, "values") and hasattr(snapshot, "feature_set"):  # producers.events.FeatureSnapshot
            snapshot = {"values": snapshot.values, "feature_set": snapshot.feature_set}
        else:
            return snapshot  # the worker names what is wrong with it
    values = snapshot.get("values")
    if isinstance(values, Mapping):
        values = {k: v if isinstance(v, str) and not typed else orjson.dumps(v).decode() for k, v in values.items()}
    fs = snapshot.get("feature_set")
    if fs is not None and not isinstance(fs, Mapping) and hasattr(fs, "name"):
        fs = {"name": fs.name, "version": fs.version}
    return {"values": values, "feature_set": fs}


def seal_pii(sealer: Sealer, prediction_id: str, subject_id: Any, snapshot: Any, typed: bool = False) -> str:
    """The envelope of an inference event's subject id and feature snapshot.

    ``typed``: the snapshot is an SDK :class:`~producers.events.FeatureSnapshot` (or its dict) whose
    values the opener JSON-encodes (:func:`snapshot_record`), so the caller's thread pays for one
    serialisation only; otherwise it is already in the Avro record's shape.
    """
    doc = {"s": subject_id, "f": snapshot, "j": 1} if typed else {"s": subject_id, "f": snapshot}
    return sealer.seal(orjson.dumps(doc), str(prediction_id))


def open_pii(unsealer: Unsealer, prediction_id: str, envelope: str) -> tuple[Any, Any]:
    """``(subject_id, snapshot)`` of an envelope made by :func:`seal_pii`, the snapshot in the Avro record's shape."""
    try:
        doc = orjson.loads(unsealer.open(envelope, prediction_id))
        snapshot = snapshot_record(doc["f"], True) if doc.get("j") else doc["f"]
        return doc["s"], snapshot
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise SealError("unsealable", "the sealed payload is not a subject/snapshot document") from None


def seal_record(sealer: Sealer, record: dict[str, Any], typed: bool = False) -> dict[str, Any]:
    """Move an inference record's subject id and snapshot into ``sealed``, in place; returns it.

    What stays in the clear cannot carry PII: ``subject_id`` becomes ``""`` (``None`` if it was not
    a string, so the schema check still names it) and ``feature_snapshot`` ``None``.
    """
    subject = record.get("subject_id")
    snapshot = record.get("feature_snapshot")
    if not typed:
        snapshot = snapshot_record(snapshot, False)
    record["sealed"] = seal_pii(sealer, str(record.get("prediction_id")), subject, snapshot, typed)
    record["subject_id"] = "" if isinstance(subject, str) else None
    record["feature_snapshot"] = None
    return record


# --- the key ring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRing:
    """The pipeline's seal keys under ``<keys_dir>/seal/``; the newest one is current."""

    directory: Path

    @classmethod
    def under(cls, keys_dir: Path) -> KeyRing:
        return cls(Path(keys_dir) / "seal")

    @property
    def public_path(self) -> Path:
        """The current public key (not a secret; for configuring emitters)."""
        return self.directory.parent / "seal.pub"

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.key"), key=lambda p: p.name)  # names start with the creation time

    def private_keys(self) -> list[X25519PrivateKey]:
        """Every seal key, checked private (0600) first; newest last."""
        keys = []
        for path in self._files():
            require_private(path, "seal key file")
            try:
                keys.append(X25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip(), validate=True)))
            except ValueError:
                raise ConfigError(f"seal key file {path} does not hold a base64 X25519 key") from None
        return keys

    def raw_private_keys(self) -> list[bytes]:
        """Every seal key as raw X25519 bytes (for the compiled event path), newest last."""
        return [k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()) for k in self.private_keys()]

    def stamp(self) -> tuple[int, tuple[str, ...]]:
        """Changes when a key is added or removed: the directory's modification time and file names."""
        try:
            mtime = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return 0, ()
        return mtime, tuple(p.name for p in self._files())

    def unsealer(self) -> Unsealer:
        """Opens envelopes for every key of the ring, including keys added later (rotation)."""
        return Unsealer(self.private_keys(), reload=self.private_keys)

    def public_key(self) -> str | None:
        """The current public key as ``x25519:<base64>``, or None when there is no seal key yet."""
        files = self._files()
        if not files:
            return None
        keys = self.private_keys()
        return public_key_text(keys[-1].public_key())

    def create(self) -> str:
        """Add a new current key (0600); returns its public key text."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        kid = key_id(key.public_key()).hex()
        path = self.directory / f"{int(time.time() * 1000):013d}-{kid}.key"
        if not create_private_file(path, base64.b64encode(raw) + b"\n"):
            raise ConfigError(f"seal key file {path} already exists")
        public = public_key_text(key.public_key())
        tmp = self.public_path.with_suffix(".pub.tmp")
        tmp.write_text(public + "\n")
        os.replace(tmp, self.public_path)
        return public

    def published(self) -> str | None:
        """The public key file's content (what an emitter on this machine reads; no private key needed)."""
        try:
            text = self.public_path.read_text().strip()
        except FileNotFoundError:
            return None
        parse_public_key(text)
        return text

    def ensure(self) -> str:
        """The current public key, creating the first seal key if there is none."""
        current = self.public_key()
        if current is not None:
            return current
        lock = self.directory.parent / ".seal.lock"
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        import fcntl

        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            return self.public_key() or self.create()
