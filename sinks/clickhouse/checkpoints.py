"""Signed checkpoints of the hash chains: tamper evidence that does not live in the store.

The chains (``chain.py``) prove that rows were not changed one at a time, but whoever can write
ClickHouse can rewrite a row, recompute every later hash and the heads, and the chains agree
again. So the sink signs what it wrote with an Ed25519 key that the SQL path never holds (a 0600
file under ``<data_dir>/keys/``, outside the store) and publishes it to ``<prefix>.checkpoints``
(one partition, unlimited retention). ``lineage verify`` checks the stored rows against every
checkpoint signed by the configured public key.

A checkpoint (the signed ``payload``, JSON) names per chain and partition the last offset
written and its row hash (the head), plus ``pins``: ``[offset, first 16 hex of row_hash]`` of
the rows written since the previous checkpoint (every row while at most ``max_pins`` moved in
all, else every ``stride``-th), so verify can name the first rewritten row, not only the
partition. It carries the time, a sequence number per signer run and the signer's key id.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lineage.exceptions import ConfigError, DeliveryError
from lineage.kafka import ACKED_PRODUCER, MANUAL_COMMIT_CONSUMER, client_config, produce_and_wait
from lineage.private_files import require_private

if TYPE_CHECKING:
    from lineage.settings import Settings

log = logging.getLogger(__name__)

FORMAT = "lineage-checkpoint/1"
PIN_HEX = 16  # hex characters of a row hash kept per pinned row (64 bits)
CHAINS = ("raw_events", "query_audit")


def key_id(public: Ed25519PublicKey) -> str:
    """Short stable name of a public key: the first 16 hex of SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(public: Ed25519PublicKey) -> str:
    """How a public key is published and configured: base64 of its 32 raw bytes."""
    return base64.b64encode(_raw(public)).decode()


def parse_public_key(text: str, where: str) -> Ed25519PublicKey:
    """A public key from ``public_key_text`` form; a one-line ConfigError otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ConfigError(f"{where} is not an Ed25519 public key (base64 of 32 bytes)") from None


class SigningKey:
    """The sink's checkpoint signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def sign(self, payload: bytes) -> bytes:
        return self._private.sign(payload)

    @classmethod
    def load_or_create(cls, path: Path, public_path: Path | None = None, store_dir: Path | None = None) -> SigningKey:
        """Load the key at ``path`` (refused unless only its owner can read it), or create it there
        (0600, directory 0700) with its public key beside it at ``public_path``.

        ``store_dir`` (the embedded store's directory) may not contain it: the engine's file
        functions must never be one path away from the key.
        """
        if store_dir is not None:
            resolved, store = path.resolve(), store_dir.resolve()
            if resolved == store or store in resolved.parents:
                raise ConfigError(f"the checkpoint signing key {path} must not be inside the ClickHouse store {store_dir}")
        if path.exists():
            require_private(path, "checkpoint signing key")
            try:
                private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError):
                raise ConfigError(f"checkpoint signing key {path} is not a PEM private key") from None
            if not isinstance(private, Ed25519PrivateKey):
                raise ConfigError(f"checkpoint signing key {path} is not an Ed25519 key")
            key = cls(private)
        else:
            key = cls(Ed25519PrivateKey.generate())
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = key._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            log.info("created checkpoint signing key %s (key id %s)", path, key.key_id)
        if public_path is not None and not public_path.exists():
            public_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            public_path.write_text(public_key_text(key.public) + "\n")
        return key


def seal(key: SigningKey, payload: dict[str, Any]) -> bytes:
    """The Kafka value of a checkpoint: the payload's exact bytes and their signature."""
    body = json.dumps({**payload, "key_id": key.key_id}, separators=(",", ":"), sort_keys=True)
    signature = base64.b64encode(key.sign(body.encode())).decode()
    return json.dumps({"payload": body, "signature": signature}).encode()


@dataclass(frozen=True)
class Checkpoint:
    """One record of the checkpoints topic, checked against the trusted public key."""

    position: int  # Kafka offset in the checkpoints topic
    valid: bool
    reason: str  # why it is refused ("" when valid)
    key_id: str = ""
    ts_ms: int = 0
    seq: int = 0
    heads: tuple[dict[str, Any], ...] = ()


def open_checkpoint(value: bytes, position: int, trusted: Ed25519PublicKey) -> Checkpoint:
    """Check one record's signature with ``trusted``; a refused one says why and is not read further."""
    try:
        envelope = json.loads(value)
        body, signature = envelope["payload"], base64.b64decode(envelope["signature"], validate=True)
        if not isinstance(body, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return Checkpoint(position, False, "not a checkpoint record")
    try:
        trusted.verify(signature, body.encode())
    except InvalidSignature:
        claimed = ""
        try:
            claimed = str(json.loads(body).get("key_id", ""))[:32]
        except (ValueError, AttributeError):
            pass
        if claimed and claimed != key_id(trusted):
            return Checkpoint(position, False, f"signed by key {claimed}, not the trusted key {key_id(trusted)}", claimed)
        return Checkpoint(position, False, "bad signature", claimed)
    try:
        payload = json.loads(body)
        if payload.get("format") != FORMAT:
            return Checkpoint(position, False, f"unknown format {str(payload.get('format'))[:40]!r}")
        heads = tuple(_head(h) for h in payload["heads"])
        return Checkpoint(position, True, "", str(payload["key_id"]), int(payload["ts"]), int(payload["seq"]), heads)
    except (ValueError, KeyError, TypeError, AttributeError):
        return Checkpoint(position, False, "signed, but not a well-formed checkpoint")


def _head(h: Any) -> dict[str, Any]:
    """A head entry, types checked (a malformed one raises)."""
    chain = str(h["chain"])
    if chain not in CHAINS:
        raise ValueError(chain)
    pins = [(int(o), str(d)) for o, d in h.get("pins", ())]
    return {"chain": chain, "topic": str(h["topic"]), "partition": int(h["partition"]),
            "last_offset": int(h["last_offset"]), "head": str(h["head"]), "pins": pins,
            "stride": int(h.get("stride", 1))}


# -- the sink's side ------------------------------------------------------------------------------


@dataclass
class _Segment:
    """One partition's head, and the rows written since the last checkpoint."""

    chain: str
    head: tuple[int, str] = (-1, "")
    offsets: list[int] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    stride: int = 1
    skip: int = 0  # rows to skip before the next kept one (while thinned)

    def add(self, offsets: Sequence[int], hashes: Sequence[str], cap: int) -> None:
        self.head = (offsets[-1], hashes[-1])
        start = self.skip
        self.offsets.extend(offsets[start::self.stride])
        self.hashes.extend(hashes[start::self.stride])
        self.skip = (start - len(offsets)) % self.stride
        while len(self.offsets) > cap:  # keep memory bounded: every other kept row
            self.offsets, self.hashes = self.offsets[1::2], self.hashes[1::2]
            self.stride *= 2
            self.skip = 0

    def take_pins(self, cap: int) -> tuple[list[list[Any]], int]:
        step = max(1, -(-len(self.offsets) // max(1, cap)))  # ceil: at most `cap` pins
        offs, hs = self.offsets[::step], self.hashes[::step]
        pins = [[o, h[:PIN_HEX]] for o, h in zip(offs, hs)]
        stride = self.stride * step
        self.offsets, self.hashes, self.stride, self.skip = [], [], 1, 0
        return pins, stride


Send = Callable[[bytes, bytes], None]  # (key, value) -> acknowledged, or raises DeliveryError


class CheckpointPublisher:
    """Collects the heads the sink writes and publishes them, signed, at most once per ``interval_s``.

    Only heads this process computed are signed: a head read back from the store at start could
    already be forged, and the checkpoints signed before it still pin the original rows.
    """

    def __init__(self, key: SigningKey, send: Send, interval_s: float = 10.0, max_pins: int = 16_000,
                 clock: Callable[[], float] = time.monotonic, wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.key = key
        self.send = send
        self.interval_s = interval_s
        self.max_pins = max_pins
        self.clock = clock
        self.wall_ms = wall_ms
        self.seq = 0
        self.published = 0
        self.failures = 0
        self.last_error = ""
        self._segments: dict[tuple[str, int], _Segment] = {}
        self._dirty = False
        self._last_publish: float | None = None

    @property
    def pending(self) -> bool:
        """Heads moved since the last checkpoint."""
        return self._dirty

    def observe(self, chain: str, topics: Sequence[str], partitions: Sequence[int], offsets: Sequence[int],
                hashes: Sequence[str]) -> None:
        """Rows of one stored batch of ``chain`` (sorted by topic, partition, offset)."""
        n, i = len(offsets), 0
        while i < n:
            t, p = topics[i], partitions[i]
            j = i + 1
            while j < n and partitions[j] == p and topics[j] == t:
                j += 1
            seg = self._segments.get((t, p))
            if seg is None:
                seg = self._segments[(t, p)] = _Segment(chain)
            seg.add(offsets[i:j], hashes[i:j], self.max_pins)
            self._dirty = True
            i = j

    def due(self) -> bool:
        return self._dirty and (self._last_publish is None or self.clock() - self._last_publish >= self.interval_s)

    def maybe_publish(self) -> bool:
        """Publish if heads moved and the interval has passed. A failure is logged and counted,
        and the rows stay pending for the next attempt; the data path is never held up."""
        if not self.due():
            return False
        return self.publish()

    def publish(self) -> bool:
        if not self._dirty:
            return False
        self._last_publish = self.clock()
        kept = {k: (s.offsets, s.hashes, s.stride, s.skip) for k, s in self._segments.items()}
        value = self._build()
        try:
            self.send(self.key.key_id.encode(), value)
        except DeliveryError as exc:
            for k, (offsets, hashes, stride, skip) in kept.items():  # pinned again next time
                seg = self._segments[k]
                seg.offsets, seg.hashes, seg.stride, seg.skip = offsets + seg.offsets, hashes + seg.hashes, stride, skip
            self.failures += 1
            self.last_error = str(exc)
            log.error("checkpoint %d not published (its rows are pinned by the next one): %s", self.seq, exc)
            return False
        self._dirty = False
        self.published += 1
        return True

    def _build(self) -> bytes:
        """The next checkpoint: every head this process wrote, pins of the rows since the last one."""
        moved = sum(len(s.offsets) for s in self._segments.values())
        cap = self.max_pins if moved <= self.max_pins else max(1, self.max_pins // len(self._segments))
        heads: list[dict[str, Any]] = []
        for (t, p), seg in sorted(self._segments.items()):
            pins, stride = seg.take_pins(cap)
            heads.append({"chain": seg.chain, "topic": t, "partition": p, "last_offset": seg.head[0],
                          "head": seg.head[1], "pins": pins, "stride": stride})
        self.seq += 1
        return seal(self.key, {"format": FORMAT, "ts": self.wall_ms(), "seq": self.seq, "heads": heads})


# -- wiring and reading -------------------------------------------------------------------------


def publisher_from_settings(settings: Settings) -> CheckpointPublisher:
    """The sink's publisher: its key (created on first use), an acknowledged Kafka producer."""
    dsn = settings.clickhouse_dsn
    store_dir = Path(dsn[len("chdb://"):]) if dsn.startswith("chdb://") else None
    key = SigningKey.load_or_create(settings.checkpoint_key_path, settings.checkpoint_public_key_path, store_dir)
    producer = Producer(client_config(settings.kafka_common(), ACKED_PRODUCER, {"linger.ms": 0}))
    topic, timeout = settings.topics.checkpoints, settings.checkpoints.publish_timeout_s

    def send(k: bytes, value: bytes) -> None:
        try:
            produce_and_wait(producer, [(topic, k, value, None, 0)], timeout=timeout)
        except KafkaException as exc:
            raise DeliveryError(f"{topic}: {exc}") from None

    c = settings.checkpoints
    return CheckpointPublisher(key, send, c.interval_s, c.max_pins)


def trusted_key(settings: Settings) -> Ed25519PublicKey | None:
    """The public key verify trusts: configured, else the published file; None when neither exists."""
    c = settings.checkpoints
    if c.public_key:
        return parse_public_key(c.public_key, "LINEAGE_CHECKPOINTS__PUBLIC_KEY")
    path = settings.checkpoint_public_key_path
    if not path.exists():
        return None
    return parse_public_key(path.read_text(), f"checkpoint public key file {path}")


def read_records(settings: Settings, timeout: float = 30.0) -> list[tuple[int, bytes]] | None:
    """Every record of the checkpoints topic as (offset, value); None when the topic does not exist."""
    topic = settings.topics.checkpoints
    try:
        return _read(settings, topic, timeout)
    except KafkaException as exc:
        raise DeliveryError(f"cannot read the checkpoints from {topic} at {settings.kafka_bootstrap}: {exc}") from None


def _read(settings: Settings, topic: str, timeout: float) -> list[tuple[int, bytes]] | None:
    consumer = Consumer(client_config(settings.kafka_common(), MANUAL_COMMIT_CONSUMER,
                                      {"group.id": f"lineage-verify-{uuid.uuid4().hex[:8]}"}))
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        out: list[tuple[int, bytes]] = []
        for partition in sorted(meta.partitions):
            tp = TopicPartition(topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            deadline = time.monotonic() + timeout
            while True:
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is None:
                    offset = int(msg.offset() or 0)
                    out.append((offset, msg.value() or b""))
                    if offset >= high - 1:
                        break
                if time.monotonic() > deadline:
                    raise DeliveryError(f"reading {topic} timed out at {len(out)} of {high - low} records")
        return out
    finally:
        consumer.close()
