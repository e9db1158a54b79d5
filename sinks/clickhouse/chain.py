"""Per-partition hash chain over the raw log: tamper evidence for auditors.

``row_hash = sha256(prev_hash || "\\n" || topic || "\\n" || partition || "\\n" || offset || "\\n" || record)``
in offset order, starting from :data:`GENESIS`. A pure function of the consumed bytes, so a
replayed batch yields identical rows. The same formula is written in SQL in
``sinks/queries/verify.sql``; a unit test proves both agree.

Unkeyed on purpose (anyone can recompute it), so on its own it catches careless edits only: the
sink signs the heads it writes (``checkpoints.py``) and ``lineage verify`` holds the stored rows
to those signatures.
"""
from __future__ import annotations

import hashlib

GENESIS = "0" * 64


def row_hash(prev_hash: str, topic: str, partition: int, offset: int, record: bytes) -> str:
    h = hashlib.sha256()
    h.update(f"{prev_hash}\n{topic}\n{partition}\n{offset}\n".encode())
    h.update(record)
    return h.hexdigest()


class ChainHeads:
    """Last (offset, row_hash) per (topic, partition), loaded from ClickHouse and advanced per batch."""

    def __init__(self, heads: dict[tuple[str, int], tuple[int, str]] | None = None) -> None:
        self._heads = dict(heads or {})

    def get(self, topic: str, partition: int) -> tuple[int, str]:
        """(last stored offset or -1, its row hash or GENESIS)."""
        return self._heads.get((topic, partition), (-1, GENESIS))

    def advance(self, topic: str, partition: int, offset: int, digest: str) -> None:
        self._heads[(topic, partition)] = (offset, digest)

    def forget(self, keys: set[tuple[str, int]]) -> None:
        for key in keys:
            self._heads.pop(key, None)

    def items(self) -> list[tuple[tuple[str, int], tuple[int, str]]]:
        return sorted(self._heads.items())
