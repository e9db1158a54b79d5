"""The emitter: ``emit()`` frames an event into the durable spool and returns; a background
thread encodes (Avro), produces (idempotent, ``acks=all``) and acknowledges.

Caller thread (the hot path): stamp ``event_id`` (UUIDv7) and the context's correlation id,
serialise with orjson, copy into the memory-mapped spool. No network, no Avro, no lock
held longer than a memcpy. The spool is the write-ahead log of every event, so a full
client queue, an unreachable broker or a dead process never loses one: frames stay on disk
until the broker acknowledged them and are replayed in order (with exponential backoff)
after delivery errors or by the next process.

Background thread: read frames in order -> normalise -> ``Codec.encode`` (schema check;
violations go to ``rejected.ndjson`` with the reason and count as failed) -> ``produce``
with a per-event delivery report -> ack the frame. ``librdkafka``'s own queue
(``queue.buffering.max.messages`` = ``EmitterConfig.queue_size``) is the bounded in-memory
queue; when it is full the reader simply waits and events accumulate in the spool.
"""
from __future__ import annotations

import atexit
import base64
import dataclasses
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

import producers.context as ctx
from lineage.codec import Codec
from lineage.exceptions import EncodeError
from lineage.kafka import ACKED_PRODUCER, client_config
from lineage.registry import RegistryError
from producers.config import EmitterConfig
from lineage.pii.sealing import HEADER_KEY_ID, PREFIX as SEALED_PREFIX, Sealer, seal_record
from producers.events import Event, InferenceEvent
from lineage import rules
from producers.exceptions import EmitterClosedError, InvalidEventError, ProducerError, SealingError
from producers.metrics import MetricsReporter, ProducerStats, snapshot
from producers.records import normalize, partition_key, time_micros
from producers.spool import DEFAULT_SEGMENT_BYTES, Frame, Spool
from producers.uuid7 import uuid7

log = logging.getLogger(__name__)

BATCH = 1000
IDLE_POLL_S = 0.005
SYNC_EVERY_S = 0.2
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 30.0

#: Delivery errors that no retry can fix: the event is rejected (kept in rejected.ndjson).
_PERMANENT = frozenset(
    getattr(KafkaError, name)
    for name in (
        "MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "INVALID_MSG", "INVALID_MSG_SIZE",
        "INVALID_RECORD", "RECORD_LIST_TOO_LARGE", "TOPIC_AUTHORIZATION_FAILED", "_INVALID_ARG",
    )
    if hasattr(KafkaError, name)
)

_dumps = orjson.dumps
_INFERENCE_FIELDS = tuple(f.name for f in dataclasses.fields(InferenceEvent))
_cid_get = ctx.correlation_id_var.get
_tp_get = ctx.traceparent_var.get
_ts_get = ctx.tracestate_var.get


def producer_config(config: EmitterConfig) -> dict[str, Any]:
    """librdkafka config of the events' producer: the emitter's defaults, then ``config.kafka_config``."""
    defaults = {
        **ACKED_PRODUCER,
        "compression.type": config.compression,
        "linger.ms": config.linger_ms,
        "queue.buffering.max.messages": config.queue_size,
        "max.in.flight.requests.per.connection": 5,
        "logger": logging.getLogger("producers.librdkafka"),  # client logs via logging, not stderr
    }
    return client_config(config.kafka_common(), defaults)


class Emitter:
    """Publishes lineage events to Kafka without ever blocking on the network.

    One per process (per ``name``) is the norm; it is thread-safe. ``name`` selects the spool
    directory ``<config.spool_dir>/<name>``; a second live process with the same name gets the
    next free slot, and whoever opens a slot replays what a dead process left in it.

    Live emitters are closed at interpreter exit. ``handle_signals=True`` also closes them on
    SIGTERM (then the previous handler runs); by default the SDK leaves signals to the service.
    """

    def __init__(
        self,
        config: EmitterConfig,
        name: str = "default",
        *,
        codec: Codec | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        on_error: Callable[[ProducerError], None] | None = None,
        handle_signals: bool = False,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.config = config
        self.name = name
        self.stats = ProducerStats()
        self.on_error = on_error
        self.shutdown_timeout = shutdown_timeout
        self._topics = config.event_topics
        self.limits = rules.Limits.from_settings(config.validation)
        self._sealer = Sealer(config.seal_public_key) if config.seal_public_key else None
        self._codec = codec or Codec.shipped(config.schema_registry_url, config.topic_prefix)
        self._client_config = producer_config(config)
        self._client_config["error_cb"] = self._on_client_error
        self.spool = Spool.open_slot(
            Path(config.spool_dir),
            name,
            max_bytes=config.spool_max_bytes,
            fsync=config.spool_fsync,
            segment_bytes=segment_bytes,
        )
        self._append = self.spool.append
        self._producer: Producer = Producer(self._client_config)
        self._closed = False
        self._stop = threading.Event()
        self._stop_deadline = 0.0
        self._need_rewind = False
        self._fatal = False
        self._hold_until = 0.0  # the schema registry failed: nothing is encoded before this
        self._registry_backoff = BACKOFF_MIN_S
        self._rejected_path = self.spool.directory / "rejected.ndjson"
        interval = config.metrics_interval_s
        self.reporter = (
            MetricsReporter(config.metrics_topic, config.kafka_common(), name, interval) if interval > 0 else None
        )
        self._thread = threading.Thread(target=self._run, name=f"lineage-emitter-{name}", daemon=True)
        self._thread.start()
        _register(self, handle_signals)

    # --- the hot path -------------------------------------------------------------------

    def emit(self, event: Event) -> str:
        """Accept a typed event; returns its ``event_id``. Never waits on the network.

        Raises :class:`SpoolFullError` when the spool is at its cap (nothing is dropped
        silently), :class:`EmitterClosedError` after :meth:`close`, ``TypeError`` for values
        JSON cannot represent, :class:`InvalidEventError` for what the pipeline would refuse
        (:mod:`lineage.rules`: bad ids, empty essential fields, clock skew, ...). Schema
        violations and an encoded size over the message limit surface as failed events
        (``on_error``, ``rejected.ndjson``, the ``failed`` metric); :meth:`check` tests all of it
        synchronously.
        """
        if self._closed:
            raise EmitterClosedError(f"emitter {self.name!r} is closed")
        eid = event.event_id
        if eid is None:
            eid = event.event_id = uuid7()
        if event.correlation_id is None:
            event.correlation_id = _cid_get()
        self._check_rules(event.KIND, _rule_view(event.KIND, orjson.loads(_dumps(event))))
        tp = _tp_get()
        if event.KIND == "inference":  # PII is sealed before it touches the spool
            rec = {f: getattr(event, f) for f in _INFERENCE_FIELDS}
            self._append(_dumps(("inference", 1, tp, _ts_get() if tp else None, seal_record(self._seal_for(), rec, True))))
        else:
            self._append(_dumps((event.KIND, 1, tp, _ts_get() if tp else None, event)))
        return eid

    def _seal_for(self) -> Sealer:
        if self._sealer is None:
            raise SealingError(
                "inference events carry PII and are sealed for the pipeline before they are written: "
                "set EmitterConfig.seal_public_key (LINEAGE_SEAL_PUBLIC_KEY; `lineage seal public-key` prints it)"
            )
        return self._sealer

    def emit_record(self, kind: str, record: Mapping[str, Any]) -> str:
        """Accept a record already shaped like the Avro schema of ``kind`` (a copy is stamped)."""
        if self._closed:
            raise EmitterClosedError(f"emitter {self.name!r} is closed")
        if kind not in self._topics:
            raise ProducerError(f"unknown event kind {kind!r} (known: {', '.join(self._topics)})")
        rec = dict(record)
        eid = rec.get("event_id") or uuid7()
        rec["event_id"] = eid
        if rec.get("correlation_id") is None:
            rec["correlation_id"] = _cid_get()
        self._check_rules(kind, normalize(kind, orjson.loads(_dumps(rec)), False))
        if kind == "inference" and not (rec.get("sealed") and rec.get("subject_id") == "" and rec.get("feature_snapshot") is None):
            seal_record(self._seal_for(), rec)  # already sealed upstream (OpenLineage facet, HTTP): kept
        tp = _tp_get()
        self._append(_dumps((kind, 0, tp, _ts_get() if tp else None, rec)))
        return str(eid)

    def emit_openlineage(self, event: Any) -> str:
        """Accept an OpenLineage RunEvent (JSON dict or ``openlineage-python`` object)."""
        from producers.openlineage import from_openlineage, to_dict

        kind, record = from_openlineage(to_dict(event))
        return self.emit_record(kind, record)

    def _check_rules(self, kind: str, rec: dict[str, Any], facets: bool = False) -> rules.Findings:
        """The pipeline's rule set on a normalised copy; :class:`InvalidEventError` if refused.
        Facet findings (never a refusal) only with ``facets=True``."""
        sealed = kind == "inference" and bool(rec.get("sealed")) and not rec.get("subject_id")
        try:
            return rules.check_event(kind, rec, time.time_ns() // 1000, self.limits, rec.get("subject_id"),
                                     rec.get("feature_snapshot"), sealed=sealed, facets=facets)
        except rules.InvalidEvent as exc:
            raise InvalidEventError(exc.reason, exc.detail) from None

    def check(self, event: Event | tuple[str, Mapping[str, Any]]) -> rules.Findings:
        """Everything the pipeline checks without state, synchronously: the rule set, the schema
        and the encoded size. Returns what the stored record will lack (recommended fields,
        facets to be dropped); raises :class:`InvalidEventError` or ``EncodeError``."""
        if isinstance(event, tuple):
            kind, rec = event[0], normalize(event[0], orjson.loads(_dumps(event[1])), False)
        else:
            kind, rec = event.KIND, normalize(event.KIND, orjson.loads(_dumps(event)), True)
        rec["event_id"] = rec.get("event_id") or "00000000-0000-7000-8000-000000000000"
        encoded = self.validate(event)  # the schema first, as the pipeline decodes before it checks
        found = self._check_rules(kind, rec, facets=True)
        try:
            rules.check_size(len(encoded), self.limits)
        except rules.InvalidEvent as exc:
            raise InvalidEventError(exc.reason, exc.detail) from None
        return found

    def validate(self, event: Event | tuple[str, Mapping[str, Any]]) -> bytes:
        """Encode synchronously (what the background thread will do); raises ``EncodeError``."""
        if isinstance(event, tuple):
            kind, rec = event[0], orjson.loads(_dumps(event[1]))
            typed = False
        else:
            kind, rec, typed = event.KIND, orjson.loads(_dumps(event)), True
        rec.setdefault("event_id", rec.get("event_id") or "00000000-0000-7000-8000-000000000000")
        return self._codec.encode(kind, normalize(kind, rec, typed))

    # --- state --------------------------------------------------------------------------

    @property
    def emitted(self) -> int:
        """Events accepted by this process (not counting ones recovered from an old spool)."""
        return self.spool.appended - self.spool.recovered

    @property
    def queue_depth(self) -> int:
        """Events in librdkafka's in-memory queue (produced, not yet acknowledged)."""
        producer: Producer | None = getattr(self, "_producer", None)
        return len(producer) if producer is not None else 0

    def metrics(self) -> dict[str, Any]:
        return snapshot(self)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every accepted event was delivered (or rejected); returns how many are left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.spool.depth > 0 and self._thread.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        return self.spool.depth

    def close(self, timeout: float | None = None) -> int:
        """Stop accepting, deliver what can be delivered within ``timeout``, release the spool.

        Returns the number of events left in the spool (replayed by the next process).
        """
        if self._closed:
            return self.spool.depth
        self._closed = True
        timeout = self.shutdown_timeout if timeout is None else timeout
        self._stop_deadline = time.monotonic() + timeout
        self._stop.set()
        self._thread.join(timeout + 5.0)
        self._producer.flush(max(0.0, min(1.0, self._stop_deadline - time.monotonic())))
        if self.reporter is not None:  # a last report, so the metrics show how this emitter ended
            if self.stats.broker_up:
                self.reporter.report(snapshot(self), time.monotonic())
            self.reporter.close(max(0.0, min(1.0, self._stop_deadline - time.monotonic())))
        left = self.spool.depth
        self.spool.close()
        del self._producer  # destroys the client: no reconnect attempts after close
        _unregister(self)
        if left:
            log.warning("emitter %s closed with %d events in the spool %s; the next start replays them",
                        self.name, left, self.spool.directory)
        return left

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- background thread --------------------------------------------------------------

    def _run(self) -> None:
        spool, reporter = self.spool, self.reporter
        backoff = BACKOFF_MIN_S
        next_sync = next_collect = time.monotonic()
        retry_at = 0.0
        while True:
            now = time.monotonic()
            if self._stop.is_set() and (spool.depth == 0 or now >= self._stop_deadline):
                break
            if self._fatal:
                self._recreate_producer()
            if self._need_rewind:
                if len(self._producer) > 0:  # let outstanding reports arrive first
                    self._producer.poll(0.05)
                    continue
                if now < retry_at:
                    self._stop.wait(min(0.05, retry_at - now))
                    continue
                if not self._broker_reachable():
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    retry_at = time.monotonic() + backoff
                    log.warning("emitter %s: broker unreachable; %d events wait in the spool, retry in %.1fs",
                                self.name, spool.depth, backoff)
                    continue
                spool.rewind()
                self.stats.replays += 1
                self._need_rewind = False
                backoff = BACKOFF_MIN_S
            if now < self._hold_until:
                self._producer.poll(min(0.05, self._hold_until - now))
                continue
            frames = spool.read(BATCH)
            if frames:
                self._produce(frames)
                self._producer.poll(0)
            else:
                self._producer.poll(IDLE_POLL_S)
            now = time.monotonic()
            if spool.fsync == "batch" and now >= next_sync:
                spool.sync()
                next_sync = now + SYNC_EVERY_S
            if now >= next_collect:
                spool.collect()
                next_collect = now + 0.5
            if reporter is not None and reporter.due(now) and self.stats.broker_up:
                reporter.report(snapshot(self), now)

    def _produce(self, frames: list[Frame]) -> None:
        produce, encode, loads = self._producer.produce, self._codec.encode, orjson.loads
        topics, on_delivery = self._topics, self._on_delivery
        for fr in frames:
            try:
                kind, typed, tp, ts, rec = loads(fr.body)
                topic = topics[kind]
                value = encode(kind, normalize(kind, rec, bool(typed)))
                if len(value) > self.limits.max_message_bytes:
                    self._reject(fr, "oversize", f"encoded event is {len(value)} bytes, limit {self.limits.max_message_bytes}")
                    continue
            except RegistryError as exc:  # the registry is down or refused the schema: not this event's fault
                self.spool.seek(fr)
                self._registry_unavailable(exc)
                return
            except EncodeError as exc:
                self._reject(fr, "schema", str(exc))
                continue
            except (ValueError, KeyError, TypeError) as exc:
                self._reject(fr, "unreadable", f"{type(exc).__name__}: {exc}")
                continue
            headers = [(ctx.HEADER_EVENT_ID, rec["event_id"]), (ctx.HEADER_KIND, kind)]
            cid = rec.get("correlation_id")
            if cid:
                headers.append((ctx.HEADER_CORRELATION, cid))
            sealed = rec.get("sealed")
            if sealed and isinstance(sealed, str) and sealed.startswith(SEALED_PREFIX):
                headers.append((HEADER_KEY_ID, _kid_of(sealed)))
            if tp:
                headers.append((ctx.HEADER_TRACEPARENT, tp))
                if ts:
                    headers.append((ctx.HEADER_TRACESTATE, ts))
            try:
                produce(topic, value, partition_key(kind, rec), headers=headers, on_delivery=partial(on_delivery, fr))
            except BufferError:  # the in-memory queue is full: the rest waits in the spool
                self.spool.seek(fr)
                self._producer.poll(0.05)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() in _PERMANENT:
                    self._reject(fr, err.name(), err.str())
                    continue
                self.spool.seek(fr)
                self._transient(err)
                return
        self._registry_backoff = BACKOFF_MIN_S

    def _registry_unavailable(self, exc: RegistryError) -> None:
        """Hold encoding with exponential backoff; the events wait in the spool, in order."""
        self.stats.delivery_errors += 1
        delay = self._registry_backoff
        self._registry_backoff = min(delay * 2, BACKOFF_MAX_S)
        self._hold_until = time.monotonic() + delay
        log.warning("emitter %s: %s; %d events wait in the spool, retry in %.1fs", self.name, exc, self.spool.depth, delay)

    def _on_delivery(self, fr: Frame, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.stats.delivered += 1
            self.stats.broker_up = True
            self.stats.observe_latency(time.time_ns() - fr.emit_ns)
            self.spool.ack(fr.segment, fr.idx)
        elif err.code() in _PERMANENT:
            self._reject(fr, err.name(), err.str())
        else:
            self._transient(err)

    def _transient(self, err: KafkaError) -> None:
        self.stats.delivery_errors += 1
        if not self._need_rewind:
            log.warning("emitter %s: delivery failed (%s); events stay in the spool and are replayed in order",
                        self.name, err.str())
        self._need_rewind = True
        if err.fatal():
            self._fatal = True

    def _on_client_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            if self.stats.broker_up:
                log.warning("emitter %s: all brokers down; events accumulate in the spool %s",
                            self.name, self.spool.directory)
            self.stats.broker_up = False
        elif err.fatal():
            log.error("emitter %s: fatal producer error %s; recreating the producer", self.name, err.str())
            self._fatal = True
            self._need_rewind = True
        else:
            log.debug("emitter %s: client error %s", self.name, err.str())

    def _broker_reachable(self) -> bool:
        try:
            self._producer.list_topics(timeout=5.0)
        except KafkaException:
            self.stats.broker_up = False
            return False
        self.stats.broker_up = True
        return True

    def _recreate_producer(self) -> None:
        old = self._producer
        try:
            old.purge()
            old.poll(0)
        except (KafkaException, RuntimeError):
            pass
        self._producer = Producer(self._client_config)
        self._fatal = False
        self._need_rewind = True

    def _reject(self, fr: Frame, reason: str, detail: str) -> None:
        """An event no retry can deliver: keep it in rejected.ndjson, count it, tell the caller."""
        try:
            event: Any = orjson.loads(fr.body)
        except ValueError:
            event = base64.b64encode(fr.body).decode()
        line = orjson.dumps({"time": time.time(), "reason": reason, "detail": detail, "frame": event})
        with open(self._rejected_path, "ab") as fh:
            fh.write(line + b"\n")
        self.stats.fail(reason)
        log.error("emitter %s: event rejected (%s): %s; kept in %s", self.name, reason, detail, self._rejected_path)
        self.spool.ack(fr.segment, fr.idx)
        if self.on_error is not None:
            self.on_error(ProducerError(f"{reason}: {detail}"))


def _rule_view(kind: str, rec: dict[str, Any]) -> dict[str, Any]:
    """A typed event's JSON with its time as microseconds: all the rules need of it (facets are
    not looked at on this path), without the cost of :func:`normalize`."""
    key = "event_time" if kind == "inference" else "eventTime"
    rec[key] = time_micros(rec.get(key))
    return rec


def _kid_of(envelope: str) -> str:
    """The seal key id (hex) an envelope names, for the ``lineage.seal.kid`` header."""
    start = len(SEALED_PREFIX)
    try:
        return base64.urlsafe_b64decode(envelope[start:start + 12])[:8].hex()
    except ValueError:
        return ""


# --- process lifecycle: close every live emitter on exit (and on SIGTERM when asked) ----------

_live: weakref.WeakSet[Emitter] = weakref.WeakSet()
_atexit_installed = False
_sigterm_installed = False
_previous_sigterm: Any = None


def _register(emitter: Emitter, handle_signals: bool) -> None:
    global _atexit_installed, _sigterm_installed, _previous_sigterm
    _live.add(emitter)
    if not _atexit_installed:
        _atexit_installed = True
        atexit.register(close_all)
    if handle_signals and not _sigterm_installed and threading.current_thread() is threading.main_thread():
        try:
            _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main interpreter
            return
        _sigterm_installed = True


def _unregister(emitter: Emitter) -> None:
    _live.discard(emitter)


def close_all() -> None:
    """Close every live emitter (each delivers for up to its ``shutdown_timeout``)."""
    for emitter in list(_live):
        emitter.close()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    close_all()
    prev = _previous_sigterm
    if callable(prev):
        prev(signum, frame)
        return
    if prev == signal.SIG_IGN:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
