"""The batch processor: one batch through decode -> accept -> run check -> route, plain synchronous code.

The consumer loop (:mod:`stream_apps.event_path.consumer`) feeds batches in through the
processing child, which delivers what comes out; this module does no Kafka I/O, so it is the
same code under test, in the worker and in the bench. Feature snapshots and subject ids are split
off right after decoding; from then on only the sealed (AES-256-GCM) snapshot and the keyed
subject reference travel. Records are never logged.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from lineage.graph import build_record, to_micros
from lineage.pii.crypto import seal
from lineage.pii.sealing import SealError, Unsealer, open_pii
from lineage.pii.store import Stored, seal_snapshot
from lineage.settings import Settings
from lineage.deadletters import dead_letter_headers, deadletter_key_ref, seal_aad
from stream_apps.enrichment import correlation_id, inference_lineage, merge_lineage, model_key, training_lineage
from stream_apps.event_path.batch import INFRA_ERRORS, BatchResult, InMessage, OutRecord
from stream_apps.event_path.decoding import Decoder
from stream_apps.exceptions import Rejected
from stream_apps.models import ModelLineage
from stream_apps.runstate import RunTransition
from stream_apps.sampling import decide
from stream_apps.validation import ValidationPolicy, validate_event

log = logging.getLogger(__name__)


class DataKeyStore(Protocol):
    """Per-subject data keys (:class:`lineage.pii.keys.DataKeys`)."""

    def subject_ref(self, subject_id: str) -> str: ...
    def get_or_create(self, refs: Iterable[str]) -> dict[str, bytes | None]: ...


class SnapshotAppender(Protocol):
    """The encrypted snapshot store (:class:`lineage.pii.store.SnapshotStore`)."""

    def append_many(self, blobs: Sequence[bytes]) -> list[Stored]: ...


class RunStateCheck(Protocol):
    """The run state machine (:class:`stream_apps.runstate.RunStates`)."""

    def check(self, transitions: Sequence[RunTransition]) -> list[str]: ...


class FlagLookup(Protocol):
    """Subjects flagged for review (:class:`stream_apps.flagged.FlaggedSubjects`)."""

    def flagged(self, refs: set[str]) -> set[str]: ...


@dataclass(slots=True)
class _Accepted:
    msg: InMessage
    kind: str
    event: dict[str, Any]
    subject_id: str | None = None
    snapshot: dict[str, Any] | None = None
    subject_ref: str = ""


@dataclass(slots=True)
class Rejection:
    msg: InMessage
    reason: str
    detail: str
    kind: str = ""  # the event class, when the message decoded
    subject_ref: str = ""  # the data subject's keyed reference, when known


class BatchProcessor:
    """Stateless between batches; all state is in Redis, the snapshot store and the lookup table."""

    def __init__(
        self,
        settings: Settings,
        decoder: Decoder,
        keys: DataKeyStore,
        store: SnapshotAppender,
        runs: RunStateCheck,
        flags: FlagLookup,
        model_lineage: Callable[[str], ModelLineage | None],
        policy: ValidationPolicy | None = None,
        clock: Callable[[], float] = time.time,
        unsealer: Unsealer | None = None,
    ) -> None:
        self.sampling = settings.sampling
        self.decoder = decoder
        self.keys = keys
        self.store = store
        self.runs = runs
        self.flags = flags
        self.model_lineage = model_lineage
        self.policy = policy or ValidationPolicy()
        self.clock = clock
        self.unsealer = unsealer
        self.accept_unsealed = settings.pii.accept_unsealed
        self.deadletter_key_days = settings.pii.deadletter_key_days
        topics = settings.topics
        self.graph_topic, self.hold_topic, self.deadletter_topic = topics.graph, topics.pii_hold, topics.deadletter

    def process(self, batch: list[InMessage]) -> BatchResult:
        """Everything the batch produces. Raises only on infrastructure failure (retry the batch).

        A bug tripped by the batch as a whole is isolated: the batch is processed one message at a
        time and the message that trips it is dead-lettered (``internal_error``).
        """
        try:
            return self._process(batch)
        except INFRA_ERRORS:
            raise
        except Exception:  # a bug in the batch stage: isolate the message(s) that trip it
            return self._one_by_one(batch)

    def reject(self, msg: InMessage, reason: str, detail: str) -> BatchResult:
        """Dead-letter one message without processing it."""
        result = BatchResult()
        self._dead_letter([Rejection(msg, reason, detail)], result)
        return result

    def _one_by_one(self, batch: list[InMessage]) -> BatchResult:
        merged = BatchResult()
        for msg in batch:
            try:
                part = self._process([msg])
            except INFRA_ERRORS:
                raise
            except Exception as exc:
                log.error("message %s[%d]@%d tripped %s; dead-lettered", msg.topic, msg.partition, msg.offset, type(exc).__name__)
                part = self.reject(msg, "internal_error", f"{type(exc).__name__} in the batch stage")
            merged.merge(part)
        return merged

    def _process(self, batch: list[InMessage]) -> BatchResult:
        now_us = int(self.clock() * 1_000_000)
        result = BatchResult()
        accepted: list[_Accepted] = []
        rejected: list[Rejection] = []
        for msg in batch:
            try:
                accepted.append(self._accept(msg, now_us, result))
            except Rejected as exc:
                rejected.append(Rejection(msg, exc.reason, exc.detail, exc.kind, exc.subject_ref))
            except INFRA_ERRORS:
                raise
            except Exception as exc:  # a bug must not stall the partition: dead-letter, count, go on
                rejected.append(Rejection(msg, "internal_error", f"{type(exc).__name__} while processing"))
        self._check_runs(accepted, result)
        self._dead_letter(rejected, result)
        self._route(accepted, result)
        return result

    def _accept(self, msg: InMessage, now_us: int, result: BatchResult) -> _Accepted:
        kind, record = self.decoder.decode(msg)
        acc = _Accepted(msg, kind, record)
        try:
            if kind == "inference":
                self._split_pii(acc, result)
            validate_event(kind, record, now_us, self.policy, acc.subject_id, acc.snapshot)
        except Rejected as exc:
            exc.kind, exc.subject_ref = kind, acc.subject_ref
            raise
        acc.subject_id = None
        return acc

    def _split_pii(self, acc: _Accepted, result: BatchResult) -> None:
        """Take the subject id and snapshot off the event (opening the seal) before anything else looks."""
        record = acc.event
        sealed = record.pop("sealed", None)
        subject, snapshot = record.pop("subject_id", None), record.pop("feature_snapshot", None)
        if sealed:
            if subject or snapshot is not None:
                clear = subject if isinstance(subject, str) and subject else None
                acc.subject_ref = self.keys.subject_ref(clear) if clear else ""
                raise Rejected("unsealed_pii", "a sealed event also carries its subject id or snapshot in the clear")
            if self.unsealer is None:
                raise Rejected("seal_key_unknown", "this worker holds no seal key to open sealed events with")
            try:
                subject, snapshot = open_pii(self.unsealer, str(record.get("prediction_id")), sealed)
            except SealError as exc:
                raise Rejected(exc.reason, exc.detail) from None
        elif subject or snapshot is not None:
            result.counters["unsealed.inference"] += 1
            if not self.accept_unsealed:
                if isinstance(subject, str) and subject:
                    acc.subject_ref = self.keys.subject_ref(subject)
                raise Rejected(
                    "unsealed_pii",
                    "subject id or snapshot in the clear: emitters must seal PII for the pipeline "
                    "(accepted only while LINEAGE_PII__ACCEPT_UNSEALED=true)",
                )
        acc.subject_id, acc.snapshot = subject, snapshot
        if isinstance(subject, str) and subject:
            acc.subject_ref = self.keys.subject_ref(subject)

    def _check_runs(self, accepted: list[_Accepted], result: BatchResult) -> None:
        """Mark the run events that contradict their run's recorded end; none is dropped.

        Events of a run may arrive in any order: arriving late is no fault, and the stored run
        state follows event time (the sink keeps the latest event by event time). What the run
        state machine calls illegal (a second, different terminal state; a non-terminal event
        timed after the recorded end) is a true anomaly of the run: the event is kept, its
        record carries ``run_anomaly`` (payload, and the run node's attributes) and it is counted.
        """
        runs = [a for a in accepted if a.kind != "inference"]
        verdicts = self.runs.check(
            [
                RunTransition(a.event["run"]["runId"], a.event["eventType"], to_micros(a.event["eventTime"]), a.event["event_id"])
                for a in runs
            ]
        )
        for a, verdict in zip(runs, verdicts):
            if verdict:
                a.event["run_anomaly"] = verdict
                result.counters["run.anomaly"] += 1

    def _dead_letter(self, rejected: list[Rejection], result: BatchResult) -> None:
        """Dead-letter records; anything that may hold PII is sealed.

        Only an event that decoded as a class without PII fields (dataset, feature, training)
        stays readable. An inference event is sealed under its subject's data key, so erasing
        the subject erases its dead letters too; whatever else (undecodable bytes, OpenLineage
        JSON that did not convert, an unknown subject) under the current dead-letter key, which
        is renewed every ``pii.deadletter_key_days`` and destroyed after its retention.
        """
        if not rejected:
            return
        now = self.clock()
        period_ref = deadletter_key_ref(now, self.deadletter_key_days)
        wanted = {r.subject_ref or period_ref for r in rejected if r.kind in ("", "inference")}
        deks = self.keys.get_or_create(wanted) if wanted else {}
        for r in rejected:
            msg = r.msg
            raw = msg.value or b""
            key_ref = ""
            if r.kind in ("", "inference"):
                key_ref = r.subject_ref or period_ref
                dek = deks.get(key_ref)
                if dek is None:  # the subject was erased: nothing of it is kept readable
                    raw = b""
                else:
                    nonce, ct = seal(dek, raw, seal_aad(msg.topic, msg.partition, msg.offset))
                    raw = nonce + ct
            headers = dead_letter_headers(msg.headers, r.reason, r.detail, msg.topic, msg.partition, msg.offset,
                                          now_ms=int(now * 1000), key_ref=key_ref, erased=bool(key_ref) and deks.get(key_ref) is None)
            result.records.append(OutRecord(self.deadletter_topic, msg.key, raw, headers))
            result.counters[f"dlq.{r.reason}"] += 1

    def _route(self, accepted: list[_Accepted], result: BatchResult) -> None:
        """Enrich, sample and seal the accepted events; build their graph and hold records."""
        inference = [a for a in accepted if a.kind == "inference"]
        flagged = self.flags.flagged({a.subject_ref for a in inference})
        deks = self.keys.get_or_create({a.subject_ref for a in inference if a.snapshot is not None})
        captured: list[tuple[dict[str, Any], bytes]] = []
        holds: list[tuple[str, dict[str, Any]]] = []
        infos: list[dict[str, Any]] = []
        pending: list[tuple[_Accepted, str, dict[str, Any] | None]] = []
        # The batch's own table updates, applied in consumption order: a prediction consumed after
        # its model version's training event in the same batch joins it, and a second training
        # event for one key merges with the first rather than with the table as it stood.
        written: dict[str, ModelLineage] = {}

        def lookup(key: str) -> ModelLineage | None:
            return written[key] if key in written else self.model_lineage(key)

        for a in accepted:
            corr, source = correlation_id(a.kind, a.event, a.msg.headers)
            a.event["correlation_id"] = corr
            info: dict[str, Any] | None = None
            if a.kind == "training":
                trained = training_lineage(a.event)
                if trained is not None:
                    key, new = trained
                    written[key] = merge_lineage(lookup(key), new)
                    result.table_updates.append((key, written[key]))
            elif a.kind == "inference":
                ev = a.event
                entry = lookup(model_key(ev["model_name"], ev["model_version"]))
                decision = decide(ev, self.sampling, a.subject_ref in flagged)
                info = inference_lineage(ev, entry, a.subject_ref, a.snapshot, source, decision)
                infos.append(info)
                dek = deks.get(a.subject_ref) if a.snapshot is not None else None
                if a.snapshot is not None and dek is None:
                    info["snapshot_status"] = "subject_erased"
                elif dek is not None:
                    blob = seal_snapshot(dek, a.subject_ref, a.event["prediction_id"], a.snapshot)
                    info["snapshot_status"] = "held"
                    if info["tier"] != "routine":
                        captured.append((info, blob))
                    holds.append(
                        (a.event["prediction_id"], {"sealed": blob.decode(), "event": _jsonable(a.event), "inference": info, "correlation_id": corr})
                    )
                a.snapshot = None
                result.counters[f"tier.{info['tier']}"] += 1
            pending.append((a, corr, info))
            result.counters[f"accepted.{a.kind}"] += 1
        for (info, _), stored in zip(captured, self.store.append_many([blob for _, blob in captured])):
            info["snapshot_pointer"], info["snapshot_sha256"] = stored.pointer, stored.sha256
            info["snapshot_status"] = "stored"
        for info in infos:
            full = info["tier"] == "routine" or bool(info["snapshot_pointer"])
            info["lineage_complete"] = bool(info["training_run_id"] and info["feature_sets"]) and full
        hold_topic, graph_topic, records = self.hold_topic, self.graph_topic, result.records
        for pid, hold in holds:
            records.append(OutRecord(hold_topic, pid.encode(), orjson.dumps(hold), None, pid))
        for a, corr, info in pending:
            graph = build_record(a.kind, a.event, corr, info)
            anomaly = a.event.get("run_anomaly")
            if anomaly:
                graph.nodes = [
                    replace(n, attributes={**n.attributes, "run_anomaly": anomaly}) if n.node_type == "run" else n
                    for n in graph.nodes
                ]
            records.append(OutRecord(graph_topic, a.event["event_id"].encode(), graph.to_bytes()))


def _jsonable(event: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(event)
    for k in ("eventTime", "event_time"):
        if k in out:
            out[k] = to_micros(out[k])
    return out
