"""The batch processor: one batch through the compiled event path, with the I/O it needs between steps.

The per-event work (decoding both framings and OpenLineage JSON, validation, splitting off and
opening the PII, correlation ids, sampling, sealing, the graph, hold and dead-letter records) is
:class:`lineage_native.EventPath`, compiled, working with the interpreter lock released. What
stays here is what is not per event: the batch's questions to Redis (run states, flagged subjects,
data keys), the model-lineage table, the snapshot store. This module does no Kafka I/O, so it is
the same code under test, in the worker and in the bench. Records are never logged.

One batch, three steps (see ``native/src/pipeline.rs``):

1. ``accept``: decode, split off the PII, validate;
2. ``route`` with the run-state verdicts, flagged subjects, data keys and table entries the batch
   names: mark run anomalies, enrich, sample, seal snapshots and dead letters;
3. ``finish`` with the positions of the stored snapshots: every output record, dead letters first,
   then holds, then graph records.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from lineage.codec import Codec
from lineage.deadletters import deadletter_key_ref
from lineage.pii.store import Stored
from lineage.settings import Settings
from lineage_native import EventPath, event_decoder
from stream_apps.event_path.batch import INFRA_ERRORS, BatchResult, InMessage, OutRecord
from stream_apps.models import ModelLineage
from stream_apps.runstate import RunTransition
from stream_apps.sampling import sampling_config
from stream_apps.validation import ValidationPolicy, limits_config

log = logging.getLogger(__name__)


class DataKeyStore(Protocol):
    """Per-subject data keys (:class:`lineage.pii.keys.DataKeys`)."""

    @property
    def pseudonym_key(self) -> bytes: ...
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


class SealKeys(Protocol):
    """The pipeline's seal keys (:class:`lineage.pii.sealing.KeyRing`): raw private keys, and a
    cheap stamp that changes when keys are added or removed (rotation)."""

    def stamp(self) -> Any: ...
    def raw_private_keys(self) -> list[bytes]: ...


def native_config(settings: Settings, codec: Codec) -> dict[str, Any]:
    """What the compiled event path is configured with (no secret: keys are handed over apart)."""
    v, s, t = settings.validation, settings.sampling, settings.topics
    return {
        "event_topics": dict(t.event_topics),
        "openlineage_topic": t.openlineage,
        "graph_topic": t.graph,
        "hold_topic": t.pii_hold,
        "deadletter_topic": t.deadletter,
        **limits_config(ValidationPolicy.from_settings(v)),
        **sampling_config(s),
        "accept_unsealed": settings.pii.accept_unsealed,
        "latest_schemas": codec.latest_schema_texts(),
    }


def _fields(msg: InMessage) -> tuple[str, int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
    return (msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.headers)


class BatchProcessor:
    """Stateless between batches; all state is in Redis, the snapshot store and the lookup table."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        keys: DataKeyStore,
        store: SnapshotAppender,
        runs: RunStateCheck,
        flags: FlagLookup,
        model_lineage: Callable[[str], ModelLineage | None],
        seal_keys: SealKeys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.store = store
        self.runs = runs
        self.flags = flags
        self.model_lineage = model_lineage
        self.clock = clock
        self.deadletter_key_days = settings.pii.deadletter_key_days
        self.seal_keys = seal_keys
        self._seal_stamp = seal_keys.stamp() if seal_keys is not None else None
        self.path = EventPath(
            event_decoder(codec), native_config(settings, codec),
            seal_keys.raw_private_keys() if seal_keys is not None else [], keys.pseudonym_key,
        )

    def process(self, batch: list[InMessage]) -> BatchResult:
        """Everything the batch produces. Raises only on infrastructure failure (retry the batch).

        A bug tripped by the batch as a whole is isolated: the batch is processed one message at a
        time and the message that trips it is dead-lettered (``internal_error``).
        """
        self._follow_seal_keys()
        try:
            return self._process(batch)
        except INFRA_ERRORS:
            raise
        except Exception:  # a bug in the batch stage: isolate the message(s) that trip it
            return self._one_by_one(batch)

    def reject(self, msg: InMessage, reason: str, detail: str) -> BatchResult:
        """Dead-letter one message without processing it."""
        return self._complete(self.path.reject(_fields(msg), reason, detail), self.clock())

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
        now = self.clock()
        staged = self.path.accept([_fields(m) for m in batch], int(now * 1_000_000))
        return self._complete(staged, now)

    def _complete(self, staged: Any, now: float) -> BatchResult:
        verdicts = self.runs.check([RunTransition(*t) for t in staged.transitions()])
        period_ref = deadletter_key_ref(now, self.deadletter_key_days)
        flag_refs, dek_refs = staged.refs(period_ref)
        flagged = self.flags.flagged(set(flag_refs)) if flag_refs else set()
        deks = self.keys.get_or_create(dek_refs) if dek_refs else {}
        table = {key: self.model_lineage(key) for key in staged.model_keys()}
        blobs, counters, updates = staged.route(verdicts, flagged, deks, table, now, period_ref)
        stored = self.store.append_many(blobs) if blobs else []
        result = BatchResult()
        result.records = [OutRecord(*r) for r in staged.finish([(s.pointer, s.sha256) for s in stored])]
        result.facts = staged.window_facts()
        result.counters.update(counters)
        result.table_updates = updates
        return result

    def _follow_seal_keys(self) -> None:
        """Take up added or removed seal keys (rotation): one stat per batch."""
        if self.seal_keys is None:
            return
        stamp = self.seal_keys.stamp()
        if stamp != self._seal_stamp:
            self._seal_stamp = stamp
            self.path.set_seal_keys(self.seal_keys.raw_private_keys())
