"""What erasure needs besides deleting the data key: Redis's files rewritten without it, and an
account of what became unreadable.

Deleting a key in Redis leaves its bytes in the append-only file (and in an RDB snapshot, if
one is kept) until the file is rewritten. :func:`rewrite_persistence` asks Redis for a rewrite
that starts after the deletion (BGREWRITEAOF, and BGSAVE when RDB snapshots are on or a dump
exists), waits until it is done and succeeded, and, when Redis's directory is on this machine,
checks that the wrapped key's bytes are gone from every file there.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from redis.exceptions import RedisError, ResponseError

from lineage.kafka import client_config
from lineage.pii.exceptions import PiiError
from lineage.settings import Settings


class PersistenceError(PiiError):
    """Redis could not rewrite its files (the data key is deleted, but its bytes may remain on disk)."""


def _info(redis: Any) -> dict[str, Any]:
    return dict(redis.info("persistence"))


def _wait(redis: Any, done: Callable[[dict[str, Any]], bool], what: str, deadline: float) -> dict[str, Any]:
    while True:
        info = _info(redis)
        if done(info):
            return info
        if time.monotonic() > deadline:
            raise PersistenceError(f"Redis did not finish {what} in time; the erased key may still be on its disk")
        time.sleep(0.05)


@dataclass(frozen=True)
class _Rewrite:
    """One of Redis's background rewrites, by the INFO fields that follow it."""

    name: str  # "AOF rewrite" / "RDB save"
    command: str  # BGREWRITEAOF / BGSAVE
    busy: tuple[str, ...]  # INFO flags set while one runs (or is scheduled)
    done: str  # INFO counter of finished runs
    status: str  # INFO field with the last run's status

    def idle(self, info: dict[str, Any]) -> bool:
        return not any(int(info.get(flag, 0)) for flag in self.busy)

    def run(self, redis: Any, deadline: float) -> None:
        """Start one after any earlier one ends (an earlier run forked before the deletion and
        would keep the key), wait for it, and check it succeeded."""
        info = _wait(redis, self.idle, f"an earlier {self.name}", deadline)
        before = int(info.get(self.done, 0))
        while True:
            try:
                redis.execute_command(self.command)
                break
            except ResponseError as exc:
                if "in progress" not in str(exc):
                    raise PersistenceError(f"Redis refused {self.command}: {exc}") from None
                _wait(redis, self.idle, f"an earlier {self.name}", deadline)
        info = _wait(redis, lambda i: self.idle(i) and int(i.get(self.done, 0)) > before, f"its {self.name}", deadline)
        if info.get(self.status) != "ok":
            raise PersistenceError(f"Redis's {self.name} failed (status {info.get(self.status)})")


_AOF = _Rewrite("AOF rewrite", "BGREWRITEAOF", ("aof_rewrite_in_progress", "aof_rewrite_scheduled"), "aof_rewrites",
                "aof_last_bgrewrite_status")
_RDB = _Rewrite("RDB save", "BGSAVE", ("rdb_bgsave_in_progress",), "rdb_saves", "rdb_last_bgsave_status")


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def bytes_on_disk(root: Path, needle: bytes) -> list[str]:
    """Files under ``root`` that contain ``needle``."""
    hits = []
    for path in _files(root):
        try:
            if needle in path.read_bytes():
                hits.append(str(path))
        except OSError:
            continue  # removed while we looked: a history file Redis was deleting
    return hits


def rewrite_persistence(redis: Any, gone: bytes | None = None, timeout_s: float = 120.0) -> dict[str, Any]:
    """Rewrite Redis's persistence files; with ``gone``, check those bytes left its directory.

    Returns ``{"aof_rewritten", "rdb_saved", "redis_dir", "verified_absent"}`` where
    ``verified_absent`` is None when Redis's directory is not on this machine."""
    deadline = time.monotonic() + timeout_s
    try:
        cfg = {**redis.config_get("appendonly"), **redis.config_get("save"), **redis.config_get("dir"),
               **redis.config_get("dbfilename")}
    except RedisError as exc:
        raise PersistenceError(f"cannot read Redis's persistence settings (CONFIG GET): {exc}") from None
    aof = str(cfg.get("appendonly", "no")) == "yes"
    root = Path(str(cfg.get("dir", "")))
    dump = root / str(cfg.get("dbfilename", "dump.rdb"))
    rdb = bool(str(cfg.get("save", "")).strip()) or dump.exists()
    try:
        if aof:
            _AOF.run(redis, deadline)
        if rdb:
            _RDB.run(redis, deadline)
    except RedisError as exc:
        raise PersistenceError(f"Redis failed while rewriting its files: {exc}") from None
    verified: bool | None = None
    if gone is not None and root.is_dir():
        # Redis unlinks the replaced files in a background thread: give it a moment
        while (hits := bytes_on_disk(root, gone)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if hits:
            raise PersistenceError(f"the erased key's bytes are still in {', '.join(hits)} after the rewrite")
        verified = True
    return {"aof_rewritten": aof, "rdb_saved": rdb, "redis_dir": str(root), "verified_absent": verified}


def count_stored_snapshots(settings: Settings, ref: str) -> int:
    """Sealed snapshots of subject ``ref`` in the store's segment files (stored and flagged ones)."""
    root = Path(settings.data_dir) / "pii" / "segments"
    needle = b'"subject_ref":"' + ref.encode() + b'"'
    return sum(seg.read_bytes().count(needle) for seg in sorted(root.glob("*.seg")))


def _count_topic(settings: Settings, topic: str, match: Callable[[Any], bool], timeout_s: float = 60.0) -> int:
    """Records of ``topic`` (every partition, start to current end) for which ``match`` holds."""
    consumer = Consumer(client_config(settings.kafka_common(), {
        "group.id": f"lineage-erase-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        ends: dict[int, int] = {}
        starts = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        if not ends:
            return 0
        consumer.assign(starts)
        count, deadline = 0, time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise PiiError(f"could not read {topic} to its end within {timeout_s:.0f}s")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err, partition = msg.error(), int(msg.partition() or 0)
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(partition, None)
                    continue
                raise PiiError(f"cannot read {topic}: {err.str()}")
            if match(msg):
                count += 1
            if int(msg.offset() or 0) + 1 >= ends.get(partition, 0):
                ends.pop(partition, None)
        return count
    except KafkaException as exc:
        raise PiiError(f"cannot read {topic}: {exc}") from None
    finally:
        consumer.close()


def count_held(settings: Settings, ref: str) -> int:
    """Records of subject ``ref`` on the hold topic."""

    def match(msg: Any) -> bool:
        try:
            return bool(orjson.loads(msg.value() or b"null")["inference"]["subject_ref"] == ref)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return False

    return _count_topic(settings, settings.topics.pii_hold, match)


def count_dead_letters(settings: Settings, ref: str) -> int:
    """Dead letters sealed under subject ``ref``'s key (header ``dlq.key``)."""
    want = ref.encode()
    return _count_topic(settings, settings.topics.deadletter,
                        lambda msg: any(k == "dlq.key" and v == want for k, v in (msg.headers() or [])))
