"""Envelope keys: one AES-256 data key per data subject, kept in Redis wrapped by the KEK.

Subject ids never leave the pipeline: :meth:`DataKeys.subject_ref` is a keyed hash (HMAC-SHA256
under the pseudonym key, which is not the KEK), stable across workers, replays and KEK rotations.
Erasure (:meth:`DataKeys.erase`) deletes the wrapped data key and leaves a tombstone, atomically,
so no worker can re-create a key for an erased subject.

A wrapped key is ``lkw1:<kid>:<nonce+ciphertext>``: ``kid`` names the KEK that wrapped it (a key
wrapped before key ids existed has no prefix). During a KEK rotation the deployment's current
KEK ring is published in Redis (:meth:`KeySpace.kek_ring`); a process whose ring differs reloads
its key file before its next wrap, and the creation script refuses a key wrapped under a KEK that
is no longer current, so no data key is left behind under a KEK about to be retired.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lineage.keyspace import KeySpace, glob_escape
from lineage.pii.crypto import KEY_BYTES
from lineage.pii.exceptions import DataKeyMissing, KekError, SubjectErased, UnknownKek

if TYPE_CHECKING:
    from lineage.pii.kek import KekProvider
    from lineage.settings import Settings

WRAP_PREFIX = b"lkw1:"

# Atomic: never create a key for an erased subject, nor under a KEK that is not the current one;
# returns {1, key} (whichever key won the race), {0} for an erased subject, {2, ring} for a stale KEK.
_GET_OR_CREATE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
local ring = redis.call('GET', KEYS[3])
if ring and string.match(ring, '^[^,]+') ~= ARGV[2] then return {2, ring} end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {1, redis.call('GET', KEYS[1])}
"""

_ERASE = """
local existed = redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return existed
"""

# Compare-and-set: replace a wrapped key only if nobody changed it meanwhile (erasure, another rotation).
_REWRAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
"""


def pack(kid: str, wrapped: bytes) -> bytes:
    return WRAP_PREFIX + kid.encode() + b":" + wrapped


def unpack(blob: bytes) -> tuple[str, bytes]:
    """``(kid, wrapped)``; kid ``""`` for a key wrapped before key ids existed."""
    if blob.startswith(WRAP_PREFIX):
        kid, sep, wrapped = blob[len(WRAP_PREFIX):].partition(b":")
        if sep:
            return kid.decode(errors="replace"), wrapped
    return "", blob


def ring_of(kek: KekProvider) -> str:
    """The ring a provider holds, as published in Redis: key ids, current first, comma-separated."""
    return ",".join(kek.key_ids())


class DataKeys:
    """Per-subject data keys in Redis (sync client), wrapped by the KEK."""

    def __init__(self, redis: Any, kek: KekProvider, space: KeySpace, pseudonym_key: bytes) -> None:
        if len(pseudonym_key) != KEY_BYTES:
            raise KekError(f"the pseudonym key must be {KEY_BYTES} bytes")
        self.redis = redis
        self.kek = kek
        self.space = space
        self._pseudonym = pseudonym_key
        self._get_or_create = redis.register_script(_GET_OR_CREATE)
        self._erase = redis.register_script(_ERASE)
        self._rewrap = redis.register_script(_REWRAP)

    @classmethod
    def from_settings(cls, settings: Settings, redis: Any) -> DataKeys:
        """The configured KEK and pseudonym key (key-holding processes only)."""
        from lineage.pii.kek import kek_provider, pseudonym_key

        refs = pseudonym_key(settings)  # first: on a fresh install it is random, not derived from a new KEK
        return cls(redis, kek_provider(settings), KeySpace.of(settings), refs)

    @property
    def pseudonym_key(self) -> bytes:
        """The key of subject references (handed to the compiled event path, which computes them)."""
        return self._pseudonym

    def subject_ref(self, subject_id: str) -> str:
        """Keyed pseudonym of a subject id (128-bit hex); the id itself is never stored."""
        return hmac.new(self._pseudonym, subject_id.encode(), hashlib.sha256).hexdigest()[:32]

    def _dek_key(self, ref: str) -> str:
        return self.space.dek(ref)

    def _tomb_key(self, ref: str) -> str:
        return self.space.erased(ref)

    def _aad(self, ref: str) -> bytes:
        return f"dek|{self.space.prefix}|{ref}".encode()

    def _wrap(self, dek: bytes, ref: str) -> bytes:
        return pack(*self.kek.wrap(dek, self._aad(ref)))

    def _unwrap(self, blob: bytes, ref: str) -> bytes:
        kid, wrapped = unpack(blob)
        try:
            return self.kek.unwrap(kid, wrapped, self._aad(ref))
        except UnknownKek:
            if not self.kek.reload():  # a rotation began elsewhere: pick up the new key file
                raise
            return self.kek.unwrap(kid, wrapped, self._aad(ref))

    def _follow_ring(self, published: bytes | None) -> None:
        """Reload the KEK when the deployment's published ring is not the one this process holds."""
        if published is not None and published.decode() != ring_of(self.kek):
            self.kek.reload()

    def get_or_create(self, refs: Iterable[str]) -> dict[str, bytes | None]:
        """Data key per subject ref, creating missing ones; None for erased subjects."""
        wanted = list(dict.fromkeys(refs))
        found: dict[str, bytes | None] = {}
        if not wanted:
            return found
        *existing, ring = self.redis.mget([*(self._dek_key(r) for r in wanted), self.space.kek_ring])
        self._follow_ring(ring)
        missing = []
        for ref, wrapped in zip(wanted, existing):
            if wrapped is not None:
                found[ref] = self._unwrap(wrapped, ref)
            else:
                missing.append(ref)
        for attempt in range(2):
            if not missing:
                break
            pipe = self.redis.pipeline(transaction=False)
            for ref in missing:
                self._get_or_create(
                    keys=[self._dek_key(ref), self._tomb_key(ref), self.space.kek_ring],
                    args=[self._wrap(os.urandom(KEY_BYTES), ref), self.kek.current_id],
                    client=pipe,
                )
            stale: list[str] = []
            for ref, (status, *value) in zip(missing, pipe.execute()):
                if status == 0:
                    found[ref] = None
                elif status == 1:
                    found[ref] = self._unwrap(value[0], ref)
                else:
                    stale.append(ref)
                    ring = value[0]
            if stale and attempt == 0:
                self._follow_ring(ring)
            missing = stale
        if missing:
            raise KekError(
                f"this process's KEK {self.kek.current_id} is not the deployment's current KEK "
                f"(ring {ring!r} in Redis) and reloading did not pick it up"
            )
        return found

    def get(self, ref: str) -> bytes:
        """The subject's data key; :class:`SubjectErased` after erasure."""
        wrapped, tomb, ring = self.redis.mget([self._dek_key(ref), self._tomb_key(ref), self.space.kek_ring])
        self._follow_ring(ring)
        if tomb is not None:
            raise SubjectErased(ref, tomb.decode(errors="replace"))
        if wrapped is None:
            raise DataKeyMissing(f"no data key for subject {ref}")
        return self._unwrap(wrapped, ref)

    def erase(self, ref: str) -> bool:
        """Destroy the subject's data key (crypto-shredding); True if a key existed."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return bool(self._erase(keys=[self._dek_key(ref), self._tomb_key(ref)], args=[stamp]))

    def erased(self, ref: str) -> bool:
        return bool(self.redis.exists(self._tomb_key(ref)))

    # --- KEK rotation ----------------------------------------------------------------------------
    def dek_refs(self) -> Iterator[str]:
        """Every subject ref with a data key (SCAN, so Redis is never blocked)."""
        head = self.space.dek("")
        for key in self.redis.scan_iter(match=glob_escape(head) + "*", count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            yield name[len(head):]

    def rewrap(self, ref: str) -> str:
        """Re-wrap one data key under the current KEK, atomically; ``rewrapped``, ``current`` or ``gone``."""
        for _ in range(5):
            blob = self.redis.get(self._dek_key(ref))
            if blob is None:
                return "gone"
            if unpack(blob)[0] == self.kek.current_id:
                return "current"
            fresh = self._wrap(self._unwrap(blob, ref), ref)
            if self._rewrap(keys=[self._dek_key(ref)], args=[blob, fresh]):
                return "rewrapped"
        raise KekError(f"data key of {ref} kept changing during its re-wrap")

    def key_id_of(self, ref: str) -> str | None:
        """The kid a subject's data key is wrapped under (None: no key)."""
        blob = self.redis.get(self._dek_key(ref))
        return None if blob is None else unpack(blob)[0]
