"""UUIDv7: RFC 9562 layout, embedded time, monotonic and unique within a process (threads too)."""
from __future__ import annotations

import threading
import time
import uuid

from producers.uuid7 import uuid7, uuid7_time_ms


def test_layout_version_variant_and_time() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid.UUID(uuid7())
    after = time.time_ns() // 1_000_000
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= uuid7_time_ms(u) <= after + 1


def test_monotonic_within_a_process() -> None:
    ids = [uuid7() for _ in range(50_000)]  # many share a millisecond: the counter orders them
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_unique_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        out[i].extend(uuid7() for _ in range(10_000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [x for chunk in out for x in chunk]
    assert len(set(every)) == len(every)
    for chunk in out:
        assert chunk == sorted(chunk)
