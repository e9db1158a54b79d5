"""Envelope keys: one AES-256 data key per data subject, kept in Redis wrapped by the KEK.

Subject ids never leave the pipeline: :meth:`DataKeys.subject_ref` is a keyed hash (HMAC-SHA256
under a key derived from the KEK), stable across workers and replays. Erasure
(:meth:`DataKeys.erase`) deletes the wrapped data key and leaves a tombstone, atomically, so no
worker can re-create a key for an erased subject.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable
from typing import Any

from lineage.keyspace import KeySpace
from lineage.pii.crypto import KEY_BYTES, KekProvider
from lineage.pii.exceptions import DataKeyMissing, SubjectErased

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

    def __init__(self, redis: Any, kek: KekProvider, space: KeySpace) -> None:
        self.redis = redis
        self.kek = kek
        self.space = space
        self._get_or_create = redis.register_script(_GET_OR_CREATE)
        self._erase = redis.register_script(_ERASE)

    def subject_ref(self, subject_id: str) -> str:
        """Keyed pseudonym of a subject id (128-bit hex); the id itself is never stored."""
        return hmac.new(self.kek.pseudonym_key(), subject_id.encode(), hashlib.sha256).hexdigest()[:32]

    def _dek_key(self, ref: str) -> str:
        return self.space.dek(ref)

    def _tomb_key(self, ref: str) -> str:
        return self.space.erased(ref)

    def _aad(self, ref: str) -> bytes:
        return f"dek|{self.space.prefix}|{ref}".encode()

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


