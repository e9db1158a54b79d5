"""Errors of the encrypted PII sink."""
from __future__ import annotations

from lineage.exceptions import LineageError


class PiiError(LineageError):
    """Root of the PII sink's errors."""


class KekError(PiiError):
    """The key-encryption key is missing, malformed or cannot unwrap a data key."""


class UnknownKek(KekError):
    """A data key is wrapped under a KEK this process does not hold (rotated, or not yet loaded)."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"no KEK with key id {kid!r} is loaded (rotated away, or the key file is stale)")
        self.kid = kid


class KeyholderUnavailable(PiiError):
    """The key-holding process (``lineage keyholder``) does not answer on its socket."""


class SubjectErased(PiiError):
    """The data subject's key was destroyed (crypto-shredded); their snapshots are unreadable."""

    def __init__(self, subject_ref: str, erased_at: str | None = None) -> None:
        when = f" at {erased_at}" if erased_at else ""
        super().__init__(f"subject {subject_ref} was erased{when}: its snapshots can no longer be decrypted")
        self.subject_ref = subject_ref
        self.erased_at = erased_at


class DataKeyMissing(PiiError):
    """No data key exists for the subject (never created, or lost)."""


class PointerError(PiiError):
    """A snapshot pointer is malformed or names nothing in the store."""


class IntegrityError(PiiError):
    """Stored ciphertext does not match its digest or fails authentication."""


class ReasonRequired(PiiError):
    """An operation that must say why (a decrypt) was asked without a reason."""
