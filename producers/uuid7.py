"""UUID version 7 (RFC 9562 section 5.7): 48-bit Unix milliseconds, then randomness.

Monotonic within a process (RFC 9562 section 6.2, method 1): the 12-bit ``rand_a`` field is a
counter seeded randomly each millisecond and incremented for every id in the same
millisecond; if it overflows, the timestamp is advanced by one millisecond. Sorting the
strings therefore sorts by creation order.
"""
from __future__ import annotations

import random
import threading
import time
import uuid

_lock = threading.Lock()
# Mersenne Twister seeded from os.urandom, re-seeded in forked children by the random module;
# ids need uniqueness, not secrecy, and os.urandom costs a syscall per id.
_bits = random.getrandbits
_last_ms = 0
_counter = 0


def uuid7_int() -> int:
    """The next UUIDv7 of this process as a 128-bit integer."""
    global _last_ms, _counter
    rand = _bits(64)
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = (rand >> 52) & 0x7FF  # random start, top bit clear: leaves room to count
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    # version 7 | 12-bit counter | variant 10 | 62 random bits
    return (ms << 80) | (0x7 << 76) | (counter << 64) | (0x2 << 62) | (rand & 0x3FFF_FFFF_FFFF_FFFF)


def uuid7() -> str:
    """The next UUIDv7 in canonical 8-4-4-4-12 lowercase form."""
    h = f"{uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: str | uuid.UUID) -> int:
    """The Unix millisecond timestamp embedded in a UUIDv7."""
    u = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    if u.version != 7:
        raise ValueError(f"{u} is not a version 7 UUID")
    return u.int >> 80
