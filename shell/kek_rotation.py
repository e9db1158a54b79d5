"""KEK rotation (``lineage keys rotate-kek``): every data key re-wrapped, then the old KEK retired.

Steps, each safe to repeat, so a rotation that stopped half-way is finished by running it again:

1. the pseudonym key is made sure of first (subject references never depend on the KEK again);
2. the KEK file becomes the ring ``new, old``: any process that (re)loads it wraps with the new
   KEK and unwraps with both;
3. the ring is published in Redis: workers reload their key file before their next wrap, and the
   creation script refuses a data key wrapped under the old KEK from then on;
4. every data key (SCAN of the key space) is re-wrapped under the new KEK, each with an atomic
   compare-and-set, and a second scan checks none is left under another KEK;
5. the file becomes ``new`` alone and Redis's ring with it (workers drop the old KEK), and Redis
   rewrites its files so the keys wrapped under the old KEK leave its disk.

A KEK from configuration (``LINEAGE_KEK``) or a custom provider is not rotated here: the
provider (a KMS) rotates its own keys.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any

from lineage.keyspace import KeySpace
from lineage.pii.crypto import KEY_BYTES
from lineage.pii.exceptions import KekError
from lineage.pii.kek import LocalKek, encode_ring, kek_id, pseudonym_key, read_ring
from lineage.private_files import replace_private_file
from lineage.pii.keys import DataKeys, ring_of
from lineage.settings import Settings
from sinks.pii.erasure import rewrite_persistence


def rotate_kek(settings: Settings, redis: Any, new_key: bytes | None = None) -> dict[str, Any]:
    """Rotate the KEK file's key (see the module docstring); returns what was done, counted."""
    if settings.kek is not None:
        raise KekError("the KEK comes from LINEAGE_KEK (configuration or a provider): rotate it there; "
                       "rotate-kek rotates the KEK file")
    path = settings.kek_path
    if not path.exists():
        raise KekError(f"no KEK file at {path}: nothing to rotate (it is created by the first worker)")
    if new_key is not None and len(new_key) != KEY_BYTES:
        raise KekError(f"the new KEK must be {KEY_BYTES} bytes")
    refs_key = pseudonym_key(settings)  # 1. before the KEK changes: derived from it if it never existed
    ring = read_ring(path)
    resumed = len(ring) > 1
    if resumed:  # a rotation stopped half-way: finish it with the key it started
        if new_key is not None and new_key != ring[0]:
            raise KekError(f"a rotation to KEK {kek_id(ring[0])} is unfinished in {path}; "
                           "run rotate-kek without a new key to finish it first")
    else:
        new = new_key if new_key is not None else os.urandom(KEY_BYTES)
        if new == ring[0]:
            raise KekError("the new KEK is the current one")
        replace_private_file(path, encode_ring([new, *ring]))  # 2.
        ring = [new, *ring]
    kek = LocalKek(ring, name=f"file:{path}", source=path)
    space = KeySpace.of(settings)
    keys = DataKeys(redis, kek, space, refs_key)
    redis.set(space.kek_ring, ring_of(kek))  # 3.
    counts = Counter(keys.rewrap(ref) for ref in keys.dek_refs())  # 4.
    left = [ref for ref in keys.dek_refs() if keys.key_id_of(ref) not in (None, kek.current_id)]
    if left:
        raise KekError(f"{len(left)} data key(s) still wrapped under an old KEK after the re-wrap "
                       f"(e.g. {left[0]}); the old KEK is kept: run rotate-kek again")
    old_ids = list(kek.key_ids()[1:])
    replace_private_file(path, encode_ring([ring[0]]))  # 5.
    kek.reload()
    redis.set(space.kek_ring, ring_of(kek))
    persistence = rewrite_persistence(redis)
    return {
        "kek_file": str(path),
        "new_kek_id": kek.current_id,
        "retired_kek_ids": old_ids,
        "rewrapped": counts["rewrapped"],
        "already_current": counts["current"],
        "erased_meanwhile": counts["gone"],
        "resumed": resumed,
        "persistence": persistence,
    }
