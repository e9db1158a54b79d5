"""Subjects flagged for review (``lineage flag``): their predictions keep full lineage.

The flag is written by :mod:`sinks.pii.operations`; the batch processor only reads it.
"""
from __future__ import annotations

from typing import Any

from lineage.keyspace import KeySpace


class FlaggedSubjects:
    """Which of a batch's subject refs are flagged (one Redis round trip)."""

    def __init__(self, redis: Any, space: KeySpace) -> None:
        self.redis = redis
        self.space = space

    def flagged(self, refs: set[str]) -> set[str]:
        if not refs:
            return set()
        ordered = sorted(refs)
        found = self.redis.mget([self.space.flagged_subject(r) for r in ordered])
        return {r for r, v in zip(ordered, found) if v is not None}
