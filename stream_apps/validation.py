"""Semantic validation of decoded events in the worker: the compiled rule set
(``native/src/rules.rs``, which the event path applies), with its refusals as dead-letter
:class:`Rejected`. The SDK and the HTTP intake check events before sending with
:mod:`lineage.rules`, which ``tests/unit/test_native_rules.py`` holds to the compiled one.

Pure functions: no I/O, an injected clock. Decode reasons come from
:class:`lineage.codec.Codec` unchanged. The run state machine (which needs state across events)
is :mod:`stream_apps.runstate`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from lineage import rules
from lineage.rules import DroppedFacet, Findings, InvalidEvent
from lineage_native import check_record
from stream_apps.exceptions import Rejected

#: reason code -> what it means (dead-letter header ``dlq.reason``).
REASONS: dict[str, str] = {
    "empty": "message has no bytes",
    "bad_magic": "neither Avro single-object nor Confluent framing",
    "truncated": "framing or Avro body cut short",
    "unknown_schema": "writer schema is not a shipped lineage schema",
    "undecodable": "bytes do not decode with the writer schema",
    "wrong_topic": "event class does not match the topic it arrived on",
    "bad_json": "OpenLineage topic message is not a JSON object",
    "openlineage_invalid": "OpenLineage event could not be converted",
    **rules.REASONS,
    "unsealed_pii": "an inference event's subject id or snapshot arrived in the clear (not sealed at the source)",
    "unsealable": "the sealed PII envelope does not open (tampered, truncated, or moved to another prediction)",
    "seal_key_unknown": "the PII is sealed for a key this pipeline does not hold",
    "internal_error": "the pipeline failed on this message (bug); kept for replay",
}

TERMINAL = frozenset({"COMPLETE", "FAIL", "ABORT"})

#: The limits (``Settings.validation``): ``ValidationPolicy.from_settings(settings.validation)``.
ValidationPolicy = rules.Limits


def check_size(raw: bytes, policy: ValidationPolicy) -> None:
    try:
        rules.check_size(len(raw), policy)
    except InvalidEvent as exc:
        raise Rejected(exc.reason, exc.detail) from None


def limits_config(policy: ValidationPolicy) -> dict[str, Any]:
    """The limits as the compiled event path takes them: the dataclass's fields."""
    return asdict(policy)


def validate_event(
    kind: str,
    ev: dict[str, Any],
    now_us: int,
    policy: ValidationPolicy,
    subject_id: Any = None,
    snapshot: Mapping[str, Any] | None = None,
) -> Findings:
    """Refuse (:class:`Rejected`) or accept ``ev``; an accepted event loses its dropped facets
    and carries its findings under ``quality``, in place."""
    try:
        stored = check_record(kind, ev, now_us, limits_config(policy), subject_id, dict(snapshot) if snapshot is not None else None)
    except ValueError as exc:
        reason, _, detail = str(exc).partition(": ")
        raise Rejected(reason, detail) from None
    ev.clear()
    ev.update(stored)
    quality = stored.get(rules.QUALITY_KEY) or {}
    return Findings(
        list(quality.get("incomplete") or ()),
        [DroppedFacet(d["where"], d["name"], d["bytes"], d["sha256"], d["why"]) for d in quality.get("dropped_facets") or ()],
    )
