"""The spool: ordered append/read, ack-driven deletion, crash recovery (torn tail, no clean close), cap, slots.

A writer SIGKILLed mid-stream is a fault test: tests/fault/test_spool_faults.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.exceptions import EventTooLargeError, SpoolFullError
from producers.spool import HEADER_SIZE, Spool


def drain(sp: Spool, ack: bool = True) -> list[bytes]:
    out: list[bytes] = []
    while True:
        frames = sp.read(100)
        if not frames:
            return out
        for fr in frames:
            out.append(fr.body)
            if ack:
                sp.ack(fr.segment, fr.idx)


def test_append_read_ack_deletes_segments(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=4096)
    bodies = [f"event-{i}".encode() * 20 for i in range(200)]
    for b in bodies:
        sp.append(b)
    assert sp.depth == 200 and sp.segments > 3
    assert drain(sp) == bodies
    sp.collect()
    assert sp.depth == 0
    assert sp.segments == 1  # only the active segment is left
    sp.close()
    assert not list((tmp_path / "s").glob("*.seg"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=1, max_size=900), max_size=60))
def test_any_bodies_come_back_in_order(tmp_path: Path, bodies: list[bytes]) -> None:
    d = tmp_path / f"h{abs(hash(tuple(bodies)))}"
    sp = Spool(d, max_bytes=1 << 22, segment_bytes=4096)
    try:
        for b in bodies:
            sp.append(b)
        assert drain(sp) == bodies
    finally:
        sp.close()


def test_rewind_resends_only_undelivered_in_order(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=4096)
    for i in range(50):
        sp.append(str(i).encode())
    frames = sp.read(50)
    for fr in frames[::2]:
        sp.ack(fr.segment, fr.idx)
    sp.rewind()
    again = [fr.body for fr in sp.read(100)]
    assert again == [str(i).encode() for i in range(1, 50, 2)]
    sp.close()


def test_torn_tail_is_skipped_and_reported(tmp_path: Path) -> None:
    d = tmp_path / "s"
    sp = Spool(d, max_bytes=1 << 20, segment_bytes=4096)
    for i in range(3):
        sp.append(b"ok%d" % i)
    seg = sp._active
    pos = seg.end
    sp.append(b"torn-frame")
    seg.mm[pos + HEADER_SIZE] ^= 0xFF  # a write cut short: the CRC no longer matches
    # simulate a crash: drop the lock without the clean close
    os.close(sp._lock_fd)
    sp._lock_fd = -1
    again = Spool(d, max_bytes=1 << 20, segment_bytes=4096)
    assert again.torn == 1 and again.recovered == 3
    assert drain(again) == [b"ok0", b"ok1", b"ok2"]
    again.close()


def test_cap_raises_spool_full_then_recovers(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s", max_bytes=4 * 4096, segment_bytes=4096)
    with pytest.raises(SpoolFullError, match="full"):
        for _ in range(10_000):
            sp.append(b"x" * 500)
    assert sp.full and sp.full_events == 1
    drain(sp)
    sp.collect()
    sp.append(b"x" * 500)  # room again once delivered segments are gone
    assert not sp.full
    sp.close()


def test_event_larger_than_a_segment(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=4096)
    with pytest.raises(EventTooLargeError):
        sp.append(b"x" * 5000)
    sp.close()


def test_second_process_gets_its_own_slot(tmp_path: Path) -> None:
    a = Spool.open_slot(tmp_path, "svc", max_bytes=1 << 20)
    b = Spool.open_slot(tmp_path, "svc", max_bytes=1 << 20)
    assert a.directory.name == "svc" and b.directory.name == "svc.1"
    with pytest.raises(BlockingIOError):
        Spool(tmp_path / "svc", max_bytes=1 << 20)
    a.close()
    b.close()


def test_fsync_always(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s", max_bytes=1 << 20, fsync="always", segment_bytes=4096)
    for i in range(100):
        sp.append(b"%d" % i)
    assert len(drain(sp)) == 100
    sp.close()


def test_delivered_prefix_is_not_replayed_after_a_crash(tmp_path: Path) -> None:
    d = tmp_path / "s"
    sp = Spool(d, max_bytes=1 << 20, segment_bytes=1 << 16)
    for i in range(10):
        sp.append(b"%d" % i)
    frames = sp.read(10)
    for fr in frames[:4] + frames[5:7]:  # 0-3 delivered, 4 not, 5-6 delivered
        sp.ack(fr.segment, fr.idx)
    os.close(sp._lock_fd)  # crash: no clean close
    sp._lock_fd = -1
    again = Spool(d, max_bytes=1 << 20, segment_bytes=1 << 16)
    assert again.recovered == 6  # only the leading delivered run is known to be safe to skip
    assert drain(again) == [b"%d" % i for i in range(4, 10)]
    again.close()
