"""Placeholder audit trail (acked produce to the audit topic); replaced by the full query audit."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import Producer

from lineage.exceptions import DeliveryError
from lineage.kafka import ACKED_PRODUCER, client_config, produce_and_wait
from lineage.pii.exceptions import AuditError
from lineage.settings import Settings
from sinks.access.roles import Actor


class AuditTrail:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.name("audit")
        self.producer = Producer(client_config(settings.kafka_common(), ACKED_PRODUCER))
        self.lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditTrail:
        return cls(settings)

    def record(self, actor: Actor, action: str, what: str, *, params: Mapping[str, Any] | None = None,
               reason: str = "", outcome: str = "ok", rows: int = 0, duration_ms: float = 0.0,
               **details: Any) -> dict[str, Any]:
        entry = {"audit_id": str(uuid.uuid4()), "ts": int(time.time() * 1000), "who": actor.name,
                 "role": actor.role.value, "via": actor.via, "action": action, "what": what,
                 "params": dict(params or {}), "reason": reason, "outcome": outcome, "rows": rows,
                 "duration_ms": duration_ms, "details": details}
        try:
            with self.lock:
                produce_and_wait(self.producer, [(self.topic, None, orjson.dumps(entry, default=str), None)], 10)
        except DeliveryError as exc:
            raise AuditError(f"audit record not confirmed by Kafka: {exc}; refusing") from None
        return entry

    def close(self) -> None:
        self.producer.flush(5)
