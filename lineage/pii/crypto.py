"""AES-256-GCM primitives of the pipeline, in one place: sealing snapshots and dead letters.

No key lives here: the key-encryption key and the pseudonym key are in :mod:`lineage.pii.kek`,
which only key-holding processes import (the sink imports this module, never that one).
"""
from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


def seal(dek: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM: (nonce, ciphertext+tag)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(dek).encrypt(nonce, plaintext, aad)


def open_sealed(dek: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; raises ``InvalidTag`` on a wrong key or tampering."""
    return AESGCM(dek).decrypt(nonce, ciphertext, aad)
