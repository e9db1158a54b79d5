"""Fuzz the whole compiled event path: decoding, OpenLineage conversion, PII opening, validation,
enrichment, sampling, sealing and record building, with seeded damaged inputs in batches.

Inputs start from the golden vectors' messages (every event class, both framings, OpenLineage
JSON, sealed and unsealed PII) and are damaged four ways: bytes (flips, cuts, splices, noise),
decoded records with a field replaced by a value of another type or shape and encoded again,
OpenLineage JSON with a field replaced, and sealed envelopes altered. Every batch goes through
the real :class:`~stream_apps.event_path.processor.BatchProcessor` (the golden vectors'
collaborators stand in for Redis). Checked for every batch:

* no panic and no exception: a panic comes out as an ``internal_error`` dead letter saying so, a
  batch-stage failure as one saying "in the batch stage" (an ``internal_error`` for an input on
  which the reference path itself fails, e.g. an array as OpenLineage ``eventType``, is parity);
* nothing lost: each message gives exactly one graph record or one dead letter;
* the window facts describe the graph records, one each, in order, and make readable window
  feed records;
* no subject id or snapshot value in the clear in any output record or feed record.

    PYTHONPATH=. .venv/bin/python native/bench/fuzz_event_path.py --count 1000000
"""
from __future__ import annotations

import argparse
import base64
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fastavro
import orjson

from lineage.codec import Codec
from lineage.schemas import SchemaRepo
from lineage.pii.store import SnapshotStore
from lineage.settings import AlertSettings
from stream_apps.alerts.feed import completeness_window, feed_records, read_entry
from stream_apps.event_path.batch import InMessage
from stream_apps.event_path.processor import BatchProcessor
from tests.golden.event_path import (
    NOW_S, PREFIX, VECTORS, GoldenFlags, GoldenKeys, GoldenRegistry, GoldenRuns, GoldenSealKeys, Vector, settings_for,
)
from tests.reference.avro_decode import ReferenceDecoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_parity import damage  # noqa: E402  (the sibling script's byte damage)

ODD_VALUES: list[Any] = [
    None, "", " ", "x" * 300, "not-a-uuid", "00000000-0000-0000-0000-000000000000", -1, 0, 2**62, 1.5, -0.0,
    float("inf"), True, [], {}, ["a", 1], {"k": "v"}, "9999-12-31T23:59:59Z", "{\"a\":", "\u0000\u202e",
]


def _pick_path(rng: random.Random, value: Any, depth: int = 0) -> list[Any]:
    """A random path into a nested record (possibly empty)."""
    if depth > 4 or rng.random() < 0.25:
        return []
    if isinstance(value, dict) and value:
        k = rng.choice(list(value))
        return [k, *_pick_path(rng, value[k], depth + 1)]
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return [i, *_pick_path(rng, value[i], depth + 1)]
    return []


def _replace(rng: random.Random, doc: Any) -> Any:
    doc = copy.deepcopy(doc)
    path = _pick_path(rng, doc)
    if not path:
        return doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if rng.random() < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(ODD_VALUES)
    return doc


class Inputs:
    def __init__(self, vectors: list[Vector], codec: Codec) -> None:
        self.messages: list[InMessage] = []
        self.records: list[tuple[InMessage, str, dict[str, Any], bytes]] = []  # (message, kind, record, header)
        self.openlineage: list[tuple[InMessage, Any]] = []
        ref = ReferenceDecoder(codec)
        for v in vectors:
            for m in v.messages:
                raw = base64.b64decode(m["value"]) if m["value"] is not None else None
                msg = InMessage(m["topic"], m["partition"], m["offset"], base64.b64decode(m["key"]) if m["key"] else None,
                                raw, [(k, base64.b64decode(x) if x is not None else None) for k, x in m["headers"]])
                self.messages.append(msg)
                if raw and raw[:1] == b"{":
                    try:
                        self.openlineage.append((msg, orjson.loads(raw)))
                    except orjson.JSONDecodeError:
                        pass
                elif raw:
                    try:
                        d = ref.decode(raw)
                    except Exception:
                        continue
                    self.records.append((msg, d.kind, d.record, raw[: 10 if raw[0] == 0xC3 else 5]))
        repo = codec.repo
        self.schemas = {kind: repo.latest(kind).parsed for kind in repo.kinds}

    def one(self, rng: random.Random, offset: int) -> InMessage:
        how = rng.randrange(4)
        if how == 1 and self.records:
            msg, kind, record, head = rng.choice(self.records)
            value = self._record(rng, kind, record, head)
        elif how == 2 and self.openlineage:
            msg, doc = rng.choice(self.openlineage)
            value = orjson.dumps(_replace(rng, doc), option=orjson.OPT_NON_STR_KEYS) if rng.random() < 0.9 else orjson.dumps(doc)[: rng.randrange(1, 40)]
        else:
            msg = rng.choice(self.messages)
            value = _damage(rng, msg.value or b"")
        return InMessage(msg.topic, rng.randrange(3), offset, msg.key, value, list(msg.headers))

    def _record(self, rng: random.Random, kind: str, record: dict[str, Any], head: bytes) -> bytes:
        for _ in range(4):
            mutated = _replace(rng, record)
            buf = _Buffer()
            try:
                fastavro.schemaless_writer(buf, self.schemas[kind], mutated)
            except Exception:
                continue
            return head + buf.data()
        return _damage(rng, head)


class _Buffer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, b: bytes) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def data(self) -> bytes:
        return b"".join(self.parts)


def _damage(rng: random.Random, source: bytes) -> bytes:
    how = rng.randrange(5)
    if how == 0:
        return rng.randbytes(rng.randrange(0, 64))
    if how == 1:
        return source[: rng.randrange(0, len(source) + 1)]
    if how == 2:
        return source + rng.randbytes(rng.randrange(1, 16))
    return damage(rng, bytearray(source), 4)


CLEAR_MARKERS = (b"subject-", b"cust-", b"applicant-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs to try (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=1_000, help="messages per batch (default 1,000)")
    parser.add_argument("--seed", type=int, default=16, help="random seed (runs are repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")
    args = parser.parse_args(argv)
    if args.count < 1 or args.batch < 1:
        parser.error("--count and --batch must be at least 1")
    doc = json.loads(VECTORS.read_text())
    vectors = [Vector.from_json(v) for v in doc["vectors"]]
    repo = SchemaRepo.load()
    codec = Codec(repo, GoldenRegistry(repo), topic_prefix=PREFIX)
    inputs = Inputs(vectors, codec)
    subjects = _clear_subjects(vectors)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    failures: list[str] = []
    outcomes: dict[str, int] = {}
    done = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-event-path-") as tmp:
        settings = settings_for(Vector("fuzz", []), Path(tmp))
        processor = BatchProcessor(
            settings, codec, GoldenKeys(), SnapshotStore(Path(tmp) / "segments", "fuzz"), GoldenRuns({}),
            GoldenFlags([]), lambda key: None, seal_keys=GoldenSealKeys(), clock=lambda: NOW_S,
        )
        topics = settings.topics
        window = completeness_window(AlertSettings())
        while done < args.count:
            n = min(args.batch, args.count - done)
            batch = [inputs.one(rng, done + i) for i in range(n)]
            try:
                result = processor.process(batch)
            except Exception as exc:  # noqa: BLE001 - reported, the run fails
                failures.append(f"batch at {done}: {type(exc).__name__}: {exc}")
                done += n
                continue
            graph = sum(1 for r in result.records if r.topic == topics.graph)
            dead = [r for r in result.records if r.topic == topics.deadletter]
            if graph + len(dead) != n:
                failures.append(f"batch at {done}: {n} messages gave {graph} graph records and {len(dead)} dead letters")
            for r in dead:
                reason = dict(r.headers or {}).get("dlq.reason", b"?").decode()
                outcomes[reason] = outcomes.get(reason, 0) + 1
                detail = dict(r.headers or {}).get("dlq.detail", b"")
                if reason == "internal_error" and (b"panic" in detail or b"in the batch stage" in detail):
                    failures.append(f"batch at {done}: internal_error {dict(r.headers or {}).get('dlq.detail')!r}")
            outcomes["accepted"] = outcomes.get("accepted", 0) + graph
            graphs = [orjson.loads(r.value) for r in result.records if r.topic == topics.graph]
            if [(f[0], f[1]) for f in result.facts] != [(g["kind"], g["event_time"]) for g in graphs]:
                failures.append(f"batch at {done}: window facts do not match the graph records")
            feed = feed_records("feed", window, result.facts, time.time())
            for r in feed:
                read_entry(r.value)  # raises: the run fails
            for r in result.records + feed:
                if r.topic in (topics.graph, topics.pii_hold, "feed") and any(s in r.value for s in subjects):
                    failures.append(f"batch at {done}: a subject id in the clear on {r.topic}")
            done += n
    summary = {"inputs": done, "failures": len(failures), "seconds": round(time.perf_counter() - start, 1),
               "outcomes": dict(sorted(outcomes.items()))}
    for f in failures[:10]:
        print(f, file=sys.stderr)
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 1 if failures else 0


def _clear_subjects(vectors: list[Vector]) -> list[bytes]:
    """Subject ids the golden inputs carry (sealed or not): none may appear in a graph or hold record."""
    found: set[bytes] = set()
    for v in vectors:
        for m in v.messages:
            raw = base64.b64decode(m["value"]) if m["value"] else b""
            for marker in CLEAR_MARKERS:
                at = raw.find(marker)
                if at >= 0:
                    end = at
                    while end < len(raw) and 0x21 <= raw[end] < 0x7F and raw[end] not in b'",':
                        end += 1
                    if end - at > len(marker) + 1:
                        found.add(raw[at:end])
    return sorted(found)


if __name__ == "__main__":
    sys.exit(main())
