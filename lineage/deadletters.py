"""Dead-letter records: the original bytes and headers plus machine-readable reason headers."""
from __future__ import annotations

import calendar
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag

from lineage.pii.crypto import NONCE_BYTES, open_sealed
from lineage.pii.exceptions import IntegrityError, PiiError

HeaderList = list[tuple[str, bytes]]
#: Subject ref of the single dead-letter key older builds sealed with (still opened).
DLQ_KEY_REF = "__deadletter__"
_DAY_S = 86_400


def deadletter_key_ref(now_s: float, period_days: int) -> str:
    """The dead-letter key of the period ``now_s`` falls in: ``__deadletter__.<first day, YYYYMMDD>``."""
    start = int(now_s // (_DAY_S * period_days)) * _DAY_S * period_days
    return f"{DLQ_KEY_REF}.{time.strftime('%Y%m%d', time.gmtime(start))}"


def deadletter_key_day(ref: str) -> float | None:
    """Start (epoch seconds) of a dead-letter key's period; None for any other ref."""
    if not ref.startswith(DLQ_KEY_REF + "."):
        return None
    try:
        return calendar.timegm(time.strptime(ref[len(DLQ_KEY_REF) + 1:], "%Y%m%d"))
    except ValueError:
        return None


class _DataKeys(Protocol):
    redis: Any
    space: Any

    def erase(self, ref: str) -> bool: ...


def prune_deadletter_keys(keys: _DataKeys, now_s: float, retention_days: int, period_days: int) -> int:
    """Destroy (erase) every dead-letter key whose period ended more than ``retention_days`` ago.

    Its dead letters can no longer be opened, as after a subject's erasure; returns how many.
    """
    horizon = now_s - _DAY_S * (retention_days + period_days)
    destroyed = 0
    for key in keys.redis.scan_iter(match=keys.space.dek(DLQ_KEY_REF + ".*"), count=1000):
        ref = (key.decode() if isinstance(key, bytes) else str(key)).rsplit(":", 1)[-1]
        start = deadletter_key_day(ref)
        if start is not None and start < horizon and keys.erase(ref):
            destroyed += 1
    return destroyed


def dead_letter_headers(
    original: Sequence[tuple[str, bytes | None]],
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    now_ms: int | None = None,
    key_ref: str = "",
    erased: bool = False,
) -> HeaderList:
    """Original headers followed by ``dlq.*``.

    A sealed value has ``dlq.sealed`` and ``dlq.key``, the data key it is sealed under (a subject
    reference, or a dead-letter key ``__deadletter__.<day>``); ``dlq.erased`` marks a value left
    out because its subject was erased.
    """
    headers: HeaderList = [(k, v if v is not None else b"") for k, v in original if not k.startswith("dlq.")]
    headers += [
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail[:1000].encode(errors="replace")),
        ("dlq.topic", topic.encode()),
        ("dlq.partition", str(partition).encode()),
        ("dlq.offset", str(offset).encode()),
        ("dlq.ts", str(now_ms if now_ms is not None else int(time.time() * 1000)).encode()),
    ]
    if key_ref:
        headers.append(("dlq.key", key_ref.encode()))
        headers.append(("dlq.erased", b"1") if erased else ("dlq.sealed", b"AES-256-GCM"))
    return headers


def seal_aad(topic: str, partition: int, offset: int) -> bytes:
    """Associated data binding a sealed dead-letter value to where the message came from."""
    return f"dlq|{topic}|{partition}|{offset}".encode()


class KeyLookup(Protocol):
    """Finds a data key by reference (:class:`lineage.pii.keys.DataKeys`)."""

    def get(self, ref: str) -> bytes: ...


def open_dead_letter(keys: KeyLookup, value: bytes, headers: Mapping[str, bytes]) -> bytes:
    """Original bytes of a dead-letter record; a value that is not sealed is returned as it is.

    ``keys`` is :class:`lineage.pii.keys.DataKeys`: ``SubjectErased`` when the key was destroyed
    (the subject erased, or the dead-letter key past its retention); ``IntegrityError`` on tampering.
    """
    if "dlq.erased" in headers:
        raise DeadLetterErased(headers.get("dlq.key", b"").decode(errors="replace"))
    if "dlq.sealed" not in headers:
        return value
    ref = headers.get("dlq.key", DLQ_KEY_REF.encode()).decode()
    aad = seal_aad(headers["dlq.topic"].decode(), int(headers["dlq.partition"]), int(headers["dlq.offset"]))
    try:
        return open_sealed(keys.get(ref), value[:NONCE_BYTES], value[NONCE_BYTES:], aad)
    except InvalidTag:
        raise IntegrityError("the dead letter failed authentication (tampered, or sealed under another key)") from None


class DeadLetterErased(PiiError):
    """The dead letter's subject was erased before it was written: nothing of it was kept."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"the dead letter's subject {ref} was erased; its content was never kept")
        self.ref = ref
