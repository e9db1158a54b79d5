"""The query audit log: who did what, when, why, with what outcome, as one record per operation.

:class:`AuditTrail` produces each record to the audit topic (``<prefix>.audit``, one partition) and
waits until Kafka acknowledged it; only then may the caller release a result. The sink stores
the records, byte for byte, in the hash-chained table ``query_audit`` (``lineage audit log``
reads it, ``lineage verify`` checks its chain). An unacknowledged record raises
:class:`~sinks.exceptions.AuditError`: the operation is refused.

:class:`Attempt` wraps one operation so its outcome is recorded whatever happens: ``ok``,
``refused: <why>`` for the errors the caller names as refusals, ``failed: <error type>`` otherwise.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import Producer

from lineage.exceptions import DeliveryError
from lineage.kafka import ACKED_PRODUCER, client_config, produce_and_wait
from producers.uuid7 import uuid7
from sinks.access.roles import Actor
from sinks.exceptions import AuditError, QueryError

if TYPE_CHECKING:
    from lineage.settings import Settings
    from sinks.clickhouse.client import QueryResult

SQL = "sql"  # analyst SQL; what = the statement
QUERY = "query"  # a named query; what = its name, params = its parameters
REPORT = "report"
DECRYPT = "decrypt"  # what = the snapshot pointer
DECRYPT_DEADLETTER = "decrypt.deadletter"  # what = <topic>/<partition>/<offset> of the dead letter
ERASE = "erase"  # what = the subject reference (never the subject id)
FLAG = "flag"  # what = the prediction id
KEY_CREATE = "key.create"  # what = the key name (never a token)
KEY_REVOKE = "key.revoke"
KEY_ROTATE = "key.rotate"
ACTIONS = frozenset({SQL, QUERY, REPORT, DECRYPT, DECRYPT_DEADLETTER, ERASE, FLAG, KEY_CREATE, KEY_REVOKE, KEY_ROTATE})

OK = "ok"
_MAX_OUTCOME = 200


def build_entry(
    actor: Actor,
    action: str,
    what: str,
    *,
    params: Mapping[str, Any] | None = None,
    reason: str = "",
    outcome: str = OK,
    rows: int = 0,
    duration_ms: float = 0.0,
    details: Mapping[str, Any] | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """One audit record as stored (``query_audit`` reads its columns out of these keys)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; known: {', '.join(sorted(ACTIONS))}")
    return {
        "audit_id": uuid7(),
        "ts": time.time_ns() // 1_000_000 if now_ms is None else now_ms,
        "who": actor.name,
        "role": actor.role.value,
        "via": actor.via,
        "action": action,
        "what": what,
        "params": dict(params or {}),
        "reason": reason,
        "outcome": outcome,
        "rows": int(rows),
        "duration_ms": round(float(duration_ms), 3),
        "details": dict(details or {}),
    }


def outcome_of(exc: BaseException, refusals: tuple[type[BaseException], ...] = ()) -> str:
    """``refused: <first line of the message>`` for a refusal, else ``failed: <error type>``.

    A failure's message is not recorded: it may quote anything, a refusal's is written to be shown.
    """
    if refusals and isinstance(exc, refusals):
        text = str(exc).strip().splitlines()
        return f"refused: {text[0] if text else type(exc).__name__}"[:_MAX_OUTCOME]
    return f"failed: {type(exc).__name__}"


def open_trail(settings: Settings) -> AuditTrail:
    """An audit trail, its topic created first if missing (a broker that creates topics on first
    use would give it the broker's defaults: several partitions, short retention)."""
    from lineage.topics import ensure_topics

    ensure_topics(settings, timeout=settings.audit.ack_timeout_s, only=[settings.topics.audit])
    return AuditTrail.from_settings(settings)


def audited_query(trail: AuditTrail, actor: Actor, action: str, what: str, params: Mapping[str, Any],
                  reason: str, run: Callable[[], QueryResult]) -> QueryResult:
    """Run a query and record it (outcome, rows, duration) before its result is released.

    A :class:`QueryError` (a refusal by the sandbox, a bad parameter) is recorded with its message.
    """
    with trail.attempt(actor, action, what, params=params, reason=reason, refusals=(QueryError,)) as attempt:
        res = run()
        attempt.rows = len(res.rows)
    return res


class AuditTrail:
    """Produces audit records and waits for their acknowledgement. Thread-safe; one producer."""

    def __init__(self, producer_config: Mapping[str, Any], topic: str, ack_timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.ack_timeout_s = ack_timeout_s
        # librdkafka gives up on the record when we do, so a refused operation's record rarely lands late
        self._producer: Producer | None = Producer(
            {**producer_config, "message.timeout.ms": max(1, int(ack_timeout_s * 1000))}
        )
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditTrail:
        return cls(client_config(settings.kafka_common(), ACKED_PRODUCER), settings.topics.audit,
                   settings.audit.ack_timeout_s)

    def record(
        self,
        actor: Actor,
        action: str,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
        reason: str = "",
        outcome: str = OK,
        rows: int = 0,
        duration_ms: float = 0.0,
        **details: Any,
    ) -> dict[str, Any]:
        """Append one record; returns it once Kafka acknowledged it, else raises AuditError."""
        entry = build_entry(actor, action, what, params=params, reason=reason, outcome=outcome, rows=rows,
                            duration_ms=duration_ms, details=details)
        value = orjson.dumps(entry)
        with self._lock:
            if self._producer is None:
                raise AuditError("the audit trail is closed; refusing")
            try:
                produce_and_wait(self._producer, [(self.topic, entry["audit_id"].encode(), value, None, 0)],
                                 self.ack_timeout_s)
            except DeliveryError as exc:
                self._producer.purge(in_queue=True, in_flight=False)
                raise AuditError(f"audit record not acknowledged by Kafka ({exc}); refusing {action}") from None
        return entry

    def attempt(
        self,
        actor: Actor,
        action: str,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
        reason: str = "",
        refusals: tuple[type[BaseException], ...] = (),
    ) -> Attempt:
        """A ``with`` block whose outcome is recorded when it ends (see :class:`Attempt`)."""
        return Attempt(self, actor, action, what, params=params, reason=reason, refusals=refusals)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(0)  # every record was acknowledged or purged already
                self._producer = None

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Attempt:
    """One audited operation: timed, and recorded when the ``with`` block ends, whatever its outcome.

    The block may set ``rows``, add to ``params`` and ``details``; ``entry`` holds the record after
    the block. On success the record is written before the caller goes on to release the result;
    an exception is recorded (:func:`outcome_of`) and propagates, unless the record itself fails,
    whose AuditError then takes its place.
    """

    def __init__(
        self,
        trail: AuditTrail,
        actor: Actor,
        action: str,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
        reason: str = "",
        refusals: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.trail, self.actor, self.action, self.what = trail, actor, action, what
        self.reason = reason
        self.refusals = refusals
        self.params: dict[str, Any] = dict(params or {})
        self.details: dict[str, Any] = {}
        self.rows = 0
        self.entry: dict[str, Any] = {}
        self._started = 0.0

    def __enter__(self) -> Attempt:
        self._started = time.monotonic()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outcome = OK if exc is None else outcome_of(exc, self.refusals)
        self.entry = self.trail.record(
            self.actor, self.action, self.what, params=self.params, reason=self.reason, outcome=outcome,
            rows=self.rows, duration_ms=(time.monotonic() - self._started) * 1000, **self.details,
        )
