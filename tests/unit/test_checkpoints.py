"""Signed checkpoints: the key file, signatures, the publisher's coalescing and pins, and the
comparison of stored rows with what was signed (pure logic; the store is a table of rows here)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from lineage.exceptions import ConfigError, DeliveryError
from sinks.clickhouse.chain import GENESIS, row_hash
from sinks.clickhouse.checkpoints import (
    FORMAT, CheckpointPublisher, SigningKey, open_checkpoint, parse_public_key, public_key_text, seal,
)
from sinks.clickhouse.client import QueryResult
from sinks.clickhouse.queries import parse_ranges
from sinks.clickhouse.verify_report import _compare
from sinks.exceptions import QueryError


def test_key_is_created_owner_only_and_loaded_again(tmp_path: Path) -> None:
    path, pub = tmp_path / "keys" / "cp.key", tmp_path / "keys" / "cp.pub"
    key = SigningKey.load_or_create(path, pub)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert parse_public_key(pub.read_text(), "pub").public_bytes_raw() == key.public.public_bytes_raw()
    assert SigningKey.load_or_create(path).key_id == key.key_id


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cp.key"
    SigningKey.load_or_create(path)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="open to other users"):
        SigningKey.load_or_create(path)


def test_the_key_may_not_live_in_the_store(tmp_path: Path) -> None:
    store = tmp_path / "clickhouse"
    with pytest.raises(ConfigError, match="must not be inside the ClickHouse store"):
        SigningKey.load_or_create(store / "keys" / "cp.key", store_dir=store)
    assert not (store / "keys").exists()


def test_a_malformed_public_key_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        parse_public_key("bm90IGEga2V5", "LINEAGE_CHECKPOINTS__PUBLIC_KEY")


def _payload(**extra: Any) -> dict[str, Any]:
    return {"format": FORMAT, "ts": 1_700_000_000_000, "seq": 1, "heads": [], **extra}


def test_signatures(tmp_path: Path) -> None:
    key, other = SigningKey.load_or_create(tmp_path / "a.key"), SigningKey.load_or_create(tmp_path / "b.key")
    value = seal(key, _payload())
    assert open_checkpoint(value, 0, key.public).valid
    refused = open_checkpoint(seal(other, _payload()), 1, key.public)
    assert not refused.valid and refused.reason == f"signed by key {other.key_id}, not the trusted key {key.key_id}"
    envelope = json.loads(value)
    envelope["payload"] = envelope["payload"].replace('"seq":1', '"seq":2')
    assert open_checkpoint(json.dumps(envelope).encode(), 2, key.public).reason == "bad signature"
    assert open_checkpoint(b"\x00garbage", 3, key.public).reason == "not a checkpoint record"
    odd = open_checkpoint(seal(key, _payload(heads=[{"chain": "nodes"}])), 4, key.public)
    assert not odd.valid and odd.reason == "signed, but not a well-formed checkpoint"
    assert public_key_text(key.public) != public_key_text(other.public)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rows(topic: str, partition: int, first: int, n: int) -> tuple[list[str], list[int], list[int], list[str]]:
    offsets = list(range(first, first + n))
    return [topic] * n, [partition] * n, offsets, [f"{partition:02d}{o:062x}" for o in offsets]


def _publisher(tmp_path: Path, sent: list[bytes], **kw: Any) -> tuple[CheckpointPublisher, _Clock, SigningKey]:
    key = SigningKey.load_or_create(tmp_path / "k.key")
    clock = _Clock()
    return CheckpointPublisher(key, lambda k, v: sent.append(v), clock=clock, wall_ms=lambda: 5, **kw), clock, key


def _heads(value: bytes, key: SigningKey) -> list[dict[str, Any]]:
    cp = open_checkpoint(value, 0, key.public)
    assert cp.valid
    return list(cp.heads)


def test_publisher_coalesces_and_always_publishes_what_moved(tmp_path: Path) -> None:
    sent: list[bytes] = []
    pub, clock, key = _publisher(tmp_path, sent, interval_s=10)
    assert not pub.maybe_publish()  # nothing moved
    pub.observe("raw_events", *_rows("g", 0, 0, 3))
    assert pub.maybe_publish() and len(sent) == 1  # the first at once
    pub.observe("raw_events", *_rows("g", 1, 0, 2))
    clock.now = 9.9
    assert not pub.maybe_publish()
    pub.observe("query_audit", *_rows("a", 0, 7, 1))
    clock.now = 10.0
    assert pub.maybe_publish() and len(sent) == 2
    heads = _heads(sent[1], key)
    # every head this process wrote; pins only of the rows since the last checkpoint
    assert [(h["chain"], h["topic"], h["partition"], h["last_offset"], [o for o, _ in h["pins"]]) for h in heads] == [
        ("query_audit", "a", 0, 7, [7]), ("raw_events", "g", 0, 2, []), ("raw_events", "g", 1, 1, [0, 1])]
    assert heads[1]["head"] == f"00{2:062x}" and heads[2]["pins"][1][1] == f"01{1:062x}"[:16]
    assert not pub.publish()  # nothing pending: a shutdown adds nothing
    pub.observe("raw_events", *_rows("g", 0, 3, 1))
    assert pub.publish() and len(sent) == 3  # at shutdown, whatever the interval


def test_a_failed_publish_keeps_the_pins_for_the_next(tmp_path: Path) -> None:
    sent: list[bytes] = []
    fail = [True]
    key = SigningKey.load_or_create(tmp_path / "k.key")

    def send(k: bytes, v: bytes) -> None:
        if fail[0]:
            raise DeliveryError("broker down")
        sent.append(v)

    pub = CheckpointPublisher(key, send, interval_s=0)
    pub.observe("raw_events", *_rows("g", 0, 0, 2))
    assert not pub.publish() and pub.failures == 1 and pub.pending
    pub.observe("raw_events", *_rows("g", 0, 2, 2))
    fail[0] = False
    assert pub.publish()
    assert [o for o, _ in _heads(sent[0], key)[0]["pins"]] == [0, 1, 2, 3]


def test_pins_are_bounded(tmp_path: Path) -> None:
    sent: list[bytes] = []
    pub, _, key = _publisher(tmp_path, sent, interval_s=0, max_pins=10)
    for first in range(0, 100, 25):
        pub.observe("raw_events", *_rows("g", 0, first, 25))
    pub.observe("raw_events", *_rows("g", 1, 0, 30))
    assert pub.publish()
    heads = _heads(sent[0], key)
    assert sum(len(h["pins"]) for h in heads) <= 10 and all(h["stride"] > 1 for h in heads)
    assert heads[0]["last_offset"] == 99 and heads[1]["last_offset"] == 29
    offsets = [o for o, _ in heads[0]["pins"]]
    assert offsets == sorted(offsets) and all(0 <= o <= 99 for o in offsets)


def test_ranges_parameter() -> None:
    assert parse_ranges('[["g", 0, 1, 2]]') == '[["g",0,1,2]]'
    for bad in ("[]", "{}", '[["g", -1, 0, 0]]', '[["g", 0, 0]]', '[[1, 0, 0, 0]]', '[["g", 0, "1", 2]]', "x"):
        with pytest.raises(QueryError, match="ranges must be"):
            parse_ranges(bad)
    with pytest.raises(QueryError):
        parse_ranges(json.dumps([["g", 0, 0, 0]] * 201))


class _Store:
    """Rows of one chain as ``verify_hashes`` returns them (the same answer, computed in Python)."""

    def __init__(self, rows: dict[tuple[str, int, int], tuple[str, str]]) -> None:
        self.rows = rows
        self.calls = 0

    def named(self, name: str, params: dict[str, Any]) -> QueryResult:
        assert name == "verify_hashes"
        self.calls += 1
        ranges = json.loads(parse_ranges(params["ranges"]))
        out: list[tuple[Any, ...]] = []
        wanted = {(t, p) for t, p, _, _ in ranges}
        for (t, p, o), (eid, h) in sorted(self.rows.items()):
            if any(t == rt and p == rp and lo <= o <= hi for rt, rp, lo, hi in ranges):
                out.append(("row", t, p, o, eid, h, 1))
        for t, p in sorted(wanted):
            offs = [o for (rt, rp, o) in self.rows if (rt, rp) == (t, p)]
            if offs:
                out.append(("extent", t, p, max(offs), "", "", len(offs)))
        return QueryResult(["kind", "topic", "kafka_partition", "kafka_offset", "event_id", "row_hash", "rows"], [], out)


def _chain(partition: int, records: list[bytes]) -> dict[tuple[str, int, int], tuple[str, str]]:
    rows, prev = {}, GENESIS
    for offset, record in enumerate(records):
        prev = row_hash(prev, "g", partition, offset, record)
        rows[("g", partition, offset)] = (f"e{partition}-{offset}", prev)
    return rows


def _signed(tmp_path: Path, rows: dict[tuple[str, int, int], tuple[str, str]], every: int) -> list[Any]:
    """Checkpoints of ``rows`` after every ``every`` rows of each partition."""
    sent: list[bytes] = []
    pub, _, key = _publisher(tmp_path, sent, interval_s=0)
    by_tp: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for (t, p, o), (_, h) in sorted(rows.items()):
        by_tp.setdefault((t, p), []).append((o, h))
    for start in range(0, max(len(v) for v in by_tp.values()), every):
        for (t, p), items in sorted(by_tp.items()):
            part = items[start:start + every]
            if part:
                pub.observe("raw_events", [t] * len(part), [p] * len(part), [o for o, _ in part], [h for _, h in part])
        pub.publish()
    return [open_checkpoint(v, i, key.public) for i, v in enumerate(sent)]


def test_compare_names_the_first_rewritten_row_and_the_head(tmp_path: Path) -> None:
    records = [f"r{i}".encode() for i in range(10)]
    original = {**_chain(0, records), **_chain(1, records)}
    cps = _signed(tmp_path, original, every=4)
    assert _compare(_Store(original).named, cps) == []
    forged = [*records]
    forged[5] = b"changed"
    tampered = {**original, **_chain(0, forged)}  # every hash from offset 5 recomputed
    got = [(p["kafka_partition"], p["kafka_offset"], p["event_id"], p["problem"], p["gap_from_offset"])
           for p in _compare(_Store(tampered).named, cps)]
    assert got == [(0, 5, "e0-5", "not_as_signed", 4), (0, 9, "e0-9", "head_not_as_signed", -1)]


def test_compare_reports_deleted_rows_and_partitions(tmp_path: Path) -> None:
    records = [f"r{i}".encode() for i in range(6)]
    original = {**_chain(0, records), **_chain(1, records)}
    cps = _signed(tmp_path, original, every=6)
    truncated = {k: v for k, v in original.items() if not (k[1] == 0 and k[2] >= 4) and k[1] != 1}
    got = [(p["kafka_partition"], p["kafka_offset"], p["problem"]) for p in _compare(_Store(truncated).named, cps)]
    assert got == [(0, 4, "signed_row_missing"), (0, 5, "head_not_as_signed"), (1, 5, "partition_missing")]


def _sign_rows(pub: CheckpointPublisher, rows: dict[tuple[str, int, int], tuple[str, str]], offsets: range) -> None:
    """One checkpoint per row of partition 0 at ``offsets``."""
    for o in offsets:
        pub.observe("raw_events", ["g"], [0], [o], [rows[("g", 0, o)][1]])
        assert pub.publish()


def _rewrite_while_stopped(tmp_path: Path, row: int = 50) -> tuple[list[tuple[int, str, int]], int]:
    """Run 1 signs rows 0-99 (a checkpoint each); while stopped, ``row`` is rewritten with every hash
    after it; run 2 continues the forged chain and signs rows 100-199 as it finds them, so its
    heads all match. Returns the problems found and the store calls it took."""
    records = [f"r{i}".encode() for i in range(200)]
    original = _chain(0, records)
    forged_records = [*records]
    forged_records[row] = b"changed"
    forged = _chain(0, forged_records)
    key = SigningKey.load_or_create(tmp_path / "k.key")
    sent: list[bytes] = []
    _sign_rows(CheckpointPublisher(key, lambda k, v: sent.append(v), interval_s=0), original, range(0, 100))
    _sign_rows(CheckpointPublisher(key, lambda k, v: sent.append(v), interval_s=0), forged, range(100, 200))
    cps = [open_checkpoint(v, i, key.public) for i, v in enumerate(sent)]
    assert [c.seq for c in cps[99:101]] == [100, 1]
    assert _compare(_Store(original).named, cps[:100]) == []
    store = _Store(forged)
    got = [(p["kafka_offset"], p["problem"], p["gap_from_offset"]) for p in _compare(store.named, cps)]
    return got, store.calls


def test_a_rewrite_while_no_sink_ran_is_named(tmp_path: Path) -> None:
    got, calls = _rewrite_while_stopped(tmp_path)
    assert got == [(50, "not_as_signed", 49)]  # the newest head is as signed: run 2 signed the forgery
    assert calls <= 6


def test_past_the_per_head_budget_run_ends_still_tell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more heads than are checked one by one, evenly spaced ones (0, 50, 100, 150) all match
    a rewrite of row 95; run 1's last head (99) does not, and the boundary is narrowed down."""
    import sinks.clickhouse.verify_report as vr

    monkeypatch.setattr(vr, "ALL_HEADS", 10)
    monkeypatch.setattr(vr, "RANGES_PER_CALL", 4)
    got, calls = _rewrite_while_stopped(tmp_path, row=95)
    assert got == [(95, "not_as_signed", 94)]
    assert calls <= 12


def test_a_full_checkpoint_fits_a_kafka_record(tmp_path: Path) -> None:
    """The most pins, with large offsets, in many partitions: under Kafka's default 1 MB."""
    sent: list[bytes] = []
    pub, _, _ = _publisher(tmp_path, sent, interval_s=0)  # max_pins: the default
    for p in range(24):
        pub.observe("raw_events", *_rows("lineage.graph", p, 10**12, 5_000))
    assert pub.publish()
    assert len(sent[0]) < 900_000
