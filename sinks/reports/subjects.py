"""What a report says about a data subject's keys and sealed records: the erasure tombstone in
Redis, and the sealed snapshots counted in the encrypted store and on the hold topic (by the same
functions `lineage erase` reports with). Only pseudonymous references are used here."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lineage.keyspace import KeySpace
from sinks.pii.erasure import count_held, count_stored_snapshots

if TYPE_CHECKING:
    from lineage.settings import Settings


def erased_at(settings: Settings, redis: Any) -> Callable[[str], str | None]:
    space = KeySpace.of(settings)

    def lookup(ref: str) -> str | None:
        stamp = redis.get(space.erased(ref))
        if stamp is None:
            return None
        return stamp.decode() if isinstance(stamp, bytes) else str(stamp)

    return lookup


def sealed(settings: Settings) -> Callable[[str], Mapping[str, int]]:
    def count(ref: str) -> Mapping[str, int]:
        return {"stored_snapshots": count_stored_snapshots(settings, ref), "held_records": count_held(settings, ref)}

    return count
