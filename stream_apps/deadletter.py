"""Dead-letter records: the original bytes and headers plus machine-readable reason headers."""
from __future__ import annotations

import time
from collections.abc import Sequence

HeaderList = list[tuple[str, bytes]]
#: Subject ref of the data key that seals dead letters from topics that may carry PII.
DLQ_KEY_REF = "__deadletter__"


def dead_letter_headers(
    original: Sequence[tuple[str, bytes | None]],
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    now_ms: int | None = None,
    sealed: bool = False,
) -> HeaderList:
    """Original headers followed by ``dlq.*``; ``dlq.sealed`` marks an encrypted value."""
    headers: HeaderList = [(k, v if v is not None else b"") for k, v in original if not k.startswith("dlq.")]
    headers += [
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail[:1000].encode(errors="replace")),
        ("dlq.topic", topic.encode()),
        ("dlq.partition", str(partition).encode()),
        ("dlq.offset", str(offset).encode()),
        ("dlq.ts", str(now_ms if now_ms is not None else int(time.time() * 1000)).encode()),
    ]
    if sealed:
        headers.append(("dlq.sealed", b"AES-256-GCM"))
    return headers


def seal_aad(topic: str, partition: int, offset: int) -> bytes:
    """Associated data binding a sealed dead-letter value to where the message came from."""
    return f"dlq|{topic}|{partition}|{offset}".encode()


def open_dead_letter(dlq_key: bytes, value: bytes, headers: dict[str, bytes]) -> bytes:
    """Original bytes of a sealed dead-letter record (``dlq.sealed``), given the dead-letter data key."""
    from lineage.pii.crypto import NONCE_BYTES, open_sealed

    aad = seal_aad(headers["dlq.topic"].decode(), int(headers["dlq.partition"]), int(headers["dlq.offset"]))
    return open_sealed(dlq_key, value[:NONCE_BYTES], value[NONCE_BYTES:], aad)
