"""Long parity run: N seeded random inputs (random bytes, valid headers with random bodies, and
golden encodings truncated, bit-flipped, overwritten or shortened) through both decoders; any
difference in outcome (record or reason) is printed and makes the exit status 1::

    PYTHONPATH=. .venv/bin/python native/bench/fuzz_parity.py [--count N] [--seed S] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time

from tests.unit.test_native_decoder import CODEC, NATIVE, VALUES, outcome_native, outcome_py


def damage(rng: random.Random, value: bytearray, edits: int) -> bytes:
    """Up to ``edits`` single-byte edits (flip a bit, replace, delete) of ``value``."""
    for _ in range(rng.randrange(1, edits + 1)):
        if not value:
            break
        at = rng.randrange(len(value))
        op = rng.randrange(3)
        if op == 0:
            value[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            value[at] = rng.randrange(256)
        else:
            del value[at]
    return bytes(value)


def mutate(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 64))
    source = rng.choice(VALUES)
    if kind == 1:
        head = source[: 5 if source[:1] == b"\x00" else 10]
        return head + rng.randbytes(rng.randrange(0, 64))
    value = bytearray(source)
    if kind == 2:
        return bytes(value[: rng.randrange(0, len(value) + 1)])
    return damage(rng, value, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs to try (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=16, help="random seed (runs are repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    rng = random.Random(args.seed)
    start = time.perf_counter()
    mismatches = 0
    reasons: dict[str, int] = {}
    for _ in range(args.count):
        data = mutate(rng)
        want = outcome_py(CODEC, data)
        got = outcome_native(NATIVE, data)
        key = want[1] if want[0] == "error" else "ok"
        reasons[key] = reasons.get(key, 0) + 1
        if got != want:
            mismatches += 1
            if mismatches <= 10:
                print(f"mismatch for {data.hex()}: python {want[0]} {want[1] if want[0] == 'error' else ''}"
                      f" native {got[0]} {got[1] if got[0] == 'error' else ''}", file=sys.stderr)
    summary = {"inputs": args.count, "mismatches": mismatches, "seconds": round(time.perf_counter() - start, 1), "outcomes": reasons}
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
