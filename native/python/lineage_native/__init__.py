"""Compiled decoder of lineage events, fed the shipped schemas of a :class:`lineage.codec.Codec`."""
from __future__ import annotations

import json
from typing import Any

from lineage.codec import Codec, Decoded
from lineage.exceptions import DecodeError
from lineage.schemas import fingerprint, full_name

from lineage_native._core import Decoder


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


__all__ = ["Decoder", "as_decoded", "decoder_for"]
