"""Dead letters for operators: list them (no content), open one (audited, like a snapshot decrypt).

A dead letter that may hold PII is sealed (:mod:`lineage.deadletters`); opening it needs the data
key it names, so this runs where the key-encryption key is held (the local administrator's CLI).
The audit record names the dead letter by its place on the topic and its key by reference, never
by content.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from lineage.deadletters import DeadLetterErased, KeyLookup, open_dead_letter
from lineage.kafka import client_config, read_record
from lineage.pii.exceptions import PiiError, ReasonRequired, SubjectErased
from lineage.settings import Settings
from sinks.access.audit import DECRYPT_DEADLETTER, AuditTrail
from sinks.access.roles import Actor


def _headers(msg: Any) -> dict[str, bytes]:
    return {k: (v or b"") for k, v in (msg.headers() or [])}


def _summary(msg: Any) -> dict[str, Any]:
    h = _headers(msg)
    text = {k: h[k].decode(errors="replace") for k in h if k.startswith("dlq.")}
    return {
        "partition": msg.partition(), "offset": msg.offset(),
        "reason": text.get("dlq.reason", ""), "detail": text.get("dlq.detail", ""),
        "source": f"{text.get('dlq.topic', '')}[{text.get('dlq.partition', '')}]@{text.get('dlq.offset', '')}",
        "ts": int(text.get("dlq.ts", "0") or 0),
        "sealed": "dlq.sealed" in h, "erased": "dlq.erased" in h, "key": text.get("dlq.key", ""),
        "bytes": len(msg.value() or b""),
    }


def list_dead_letters(settings: Settings, limit: int = 50, reason: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters (per partition, merged by time), without their content."""
    topic = settings.topics.deadletter
    consumer = Consumer(client_config(settings.kafka_common(), {
        "group.id": f"lineage-dlq-list-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "enable.partition.eof": True}))
    found: list[dict[str, Any]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        wanted: list[TopicPartition] = []
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                # Read back far enough to find `limit` matches of a rare reason too (bounded).
                start = max(low, high - (limit if reason is None else limit * 50))
                wanted.append(TopicPartition(topic, p, start))
                ends[p] = high
        if not wanted:
            return []
        consumer.assign(wanted)
        done: set[int] = set()
        deadline = time.monotonic() + 60
        while len(done) < len(ends) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err, part, off = msg.error(), msg.partition() or 0, msg.offset() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(part)
                continue
            if off >= ends[part] - 1:
                done.add(part)
            row = _summary(msg)
            if reason is None or row["reason"] == reason:
                found.append(row)
    finally:
        consumer.close()
    found.sort(key=lambda r: (r["ts"], r["partition"], r["offset"]))
    return found[-limit:]


def open_one(
    settings: Settings, partition: int, offset: int, actor: Actor, why: str, audit: AuditTrail, keys: KeyLookup,
) -> dict[str, Any]:
    """The original bytes of one dead letter; every attempt is in the audit log, a success before the bytes go out.

    ``keys`` looks data keys up (:class:`lineage.pii.keys.DataKeys` in a key-holding process).
    """
    topic = settings.topics.deadletter
    where = f"{topic}/{partition}/{offset}"
    with audit.attempt(actor, DECRYPT_DEADLETTER, where, reason=why,
                       refusals=(ReasonRequired, SubjectErased, DeadLetterErased)) as attempt:
        if not why.strip():
            raise ReasonRequired("a reason is required to open a dead letter (--reason)")
        try:
            msg = read_record(settings.kafka_common(), topic, partition, offset)
        except KafkaException as exc:
            raise PiiError(f"cannot read {where}: {exc.args[0].str()}") from None
        if msg is None:
            raise PiiError(f"no dead letter at {where} (past the end, or removed by retention)")
        headers = _headers(msg)
        attempt.details["key"] = headers.get("dlq.key", b"").decode(errors="replace")
        original = open_dead_letter(keys, msg.value() or b"", headers)
        attempt.rows = 1
    return {**_summary(msg), "value": original, "audit": attempt.entry}
