"""The compiled event path (:class:`EventPath`) and decoder of lineage events, fed the shipped
schemas of a :class:`lineage.codec.Codec`."""
from __future__ import annotations

import json
from typing import Any

from lineage.codec import Codec, Decoded
from lineage.exceptions import DecodeError
from lineage.registry import RegistryError
from lineage.schemas import fingerprint, full_name

from lineage_native._core import (
    REASONS, Batch, Decoder, EventPath, build_graph_record, check_record, column_edges, correlation_id, merge_lineage, sample_point,
    sampling_decision, training_lineage, window_facts,
)


def decoder_for(codec: Codec, id_map: dict[int, dict[str, Any]] | None = None) -> Decoder:
    """A :class:`Decoder` knowing every shipped fingerprint of ``codec``, and the Confluent ids of
    ``id_map`` (schema id -> raw writer schema), each resolved to the latest shipped schema of its kind."""
    dec = Decoder(DecodeError)
    for shipped in codec.repo:
        latest = codec.repo.latest(shipped.kind)
        reader = None if latest.fingerprint == shipped.fingerprint else json.dumps(latest.raw)
        dec.add_fingerprint(shipped.fingerprint, shipped.kind, shipped.version, json.dumps(shipped.raw), reader)
    by_fp = {s.fingerprint: s for s in codec.repo}
    for schema_id, raw in (id_map or {}).items():
        kind = codec.repo.kind_of(full_name(raw))
        if kind is None:
            continue
        latest = codec.repo.latest(kind)
        known = by_fp.get(fingerprint(raw))
        same = known is not None and known.fingerprint == latest.fingerprint
        version = known.version if known is not None else 0
        dec.add_schema_id(schema_id, kind, version, json.dumps(raw), None if same else json.dumps(latest.raw))
    if id_map is not None:  # the map stands for the whole registry: an id outside it is not there
        dec.set_resolver(lambda schema_id: None)
    return dec


def as_decoded(item: tuple[str, dict[str, Any], int, str]) -> Decoded:
    """The codec's :class:`Decoded` for one result tuple of the compiled decoder."""
    kind, record, version, framing = item
    return Decoded(kind, record, version, framing)  # type: ignore[arg-type]


def event_decoder(codec: Codec) -> Decoder:
    """A :class:`Decoder` knowing every shipped fingerprint of ``codec`` and resolving Confluent
    schema ids through its registry, as :meth:`lineage.codec.Codec.decode` does: an id's writer
    schema is mapped to a shipped event class by its record name and read into the latest schema of
    that class. A registry that cannot answer raises :class:`~lineage.registry.RegistryError` (the
    batch is retried), never a dead letter."""
    dec = decoder_for(codec)
    registry = codec.registry
    if registry is None:
        return dec
    by_fp = {s.fingerprint: s for s in codec.repo}

    def resolve(schema_id: int) -> tuple[str, int, str, str | None] | str | None:
        try:
            raw = registry.schema_by_id(schema_id)
        except RegistryError as exc:
            if exc.not_found:
                return None
            raise
        if not isinstance(raw, dict) or raw.get("type") != "record" or "name" not in raw:
            return f"schema id {schema_id} is not a record schema"
        name = full_name(raw)
        kind = codec.repo.kind_of(name)
        if kind is None:
            return f"schema id {schema_id} is {name}, not a lineage event"
        latest = codec.repo.latest(kind)
        known = by_fp.get(fingerprint(raw))
        same = known is not None and known.fingerprint == latest.fingerprint
        return kind, (known.version if known is not None else 0), json.dumps(raw), None if same else json.dumps(latest.raw)

    dec.set_resolver(resolve)
    return dec


__all__ = [
    "REASONS", "Batch", "Decoder", "EventPath", "as_decoded", "build_graph_record", "check_record", "column_edges", "correlation_id", "decoder_for",
    "event_decoder", "merge_lineage", "sample_point", "sampling_decision", "training_lineage",
    "window_facts",
]
