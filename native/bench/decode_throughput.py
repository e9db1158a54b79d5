"""Decode throughput: the fastavro-based reference decoder (``tests/reference/avro_decode.py``, how
the project decoded before the compiled decoder) against the compiled decoder, on the golden inputs repeated.

Prints events per second for each, single- and two-threaded; a measurement, not a test::

    PYTHONPATH=. .venv/bin/python native/bench/decode_throughput.py [--repeat N] [--json]
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lineage.codec import Codec
from lineage.exceptions import DecodeError
from lineage.schemas import SchemaRepo
from lineage_native import decoder_for
from tests.golden.event_path import GoldenRegistry
from tests.reference.avro_decode import ReferenceDecoder

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden" / "event_path.json"


def golden_values() -> list[bytes]:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return [base64.b64decode(m["value"]) for v in doc["vectors"] for m in v["messages"] if m["value"] is not None]


def timed(threads: int, work: Callable[[], None]) -> float:
    """Wall time of ``threads`` threads each running ``work`` once."""
    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="times the golden inputs are repeated per batch")
    parser.add_argument("--batch-size", type=int, default=500, help="messages per decode_batch call (a consumer poll)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.batch_size < 1:
        parser.error("--repeat and --batch-size must be at least 1")

    repo = SchemaRepo.load()
    registry = GoldenRegistry(repo)
    codec = Codec(repo, registry, topic_prefix="lineage")
    native = decoder_for(codec, registry.by_id)
    reference = ReferenceDecoder(codec)
    batch = golden_values() * args.repeat

    def python_all() -> None:
        for data in batch:
            try:
                reference.decode(data)
            except DecodeError:
                pass

    def native_each() -> None:
        for data in batch:
            try:
                native.decode(data)
            except DecodeError:
                pass

    chunks = [batch[i : i + args.batch_size] for i in range(0, len(batch), args.batch_size)]

    def native_batch() -> None:
        for chunk in chunks:
            native.decode_batch(chunk)

    results = {}
    for name, work in (("python", python_all), ("native_each", native_each), ("native_batch", native_batch)):
        for threads in (1, 2):
            seconds = timed(threads, work)
            results[f"{name}_{threads}t"] = round(threads * len(batch) / seconds)
    results["events_per_batch"] = len(batch)
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:>20}  {value:>12,}{'' if key == 'events_per_batch' else ' events/s'}")
        print(f"{'ratio 1 thread':>20}  {results['native_batch_1t'] / results['python_1t']:.1f}x (batch / python)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
