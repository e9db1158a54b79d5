"""A reference decoder of lineage events built on fastavro's reader, for tests only.

The product decodes with the compiled decoder (:meth:`lineage.codec.Codec.decode`); this one is
an independent oracle: fastavro does the Avro reading and schema resolution, and the framing and
reason codes follow the wire contract in ``lineage/codec.py``. The parity tests and
``native/bench/fuzz_parity.py`` hold the compiled decoder to it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader

from lineage.codec import Codec, Decoded, Framing
from lineage.exceptions import DecodeError, SchemaError
from lineage.registry import RegistryError
from lineage.schemas import fingerprint, full_name, parse


@dataclass(frozen=True, slots=True)
class _Reader:
    kind: str
    version: int
    writer: dict[str, Any]
    reader: dict[str, Any] | None


class ReferenceDecoder:
    def __init__(self, codec: Codec) -> None:
        self.repo = codec.repo
        self.registry = codec.registry
        self._by_fp: dict[bytes, _Reader] = {}
        self._by_id: dict[int, _Reader] = {}
        for shipped in self.repo:
            latest = self.repo.latest(shipped.kind)
            self._by_fp[shipped.fingerprint] = _Reader(
                shipped.kind, shipped.version, shipped.parsed,
                None if shipped.fingerprint == latest.fingerprint else latest.parsed,
            )

    def decode(self, data: bytes) -> Decoded:
        if not data:
            raise DecodeError("empty", "no bytes", data)
        framing: Framing
        if data[0] == 0xC3:
            if len(data) < 2:
                raise DecodeError("truncated", "single-object header cut after the first magic byte", data)
            if data[1] != 0x01:
                raise DecodeError("bad_magic", f"single-object magic must be C3 01, got C3 {data[1]:02X}", data)
            if len(data) < 10:
                raise DecodeError("truncated", f"single-object header needs 10 bytes, got {len(data)}", data)
            fp = bytes(data[2:10])
            found = self._by_fp.get(fp)
            if found is None:
                raise DecodeError("unknown_schema", f"no shipped schema has fingerprint {fp.hex()}", data)
            reader, start, framing = found, 10, "single-object"
        elif data[0] == 0x00:
            if len(data) < 5:
                raise DecodeError("truncated", f"Confluent header needs 5 bytes, got {len(data)}", data)
            schema_id = int.from_bytes(data[1:5], "big")
            reader = self._by_id.get(schema_id) or self._fetch(schema_id, data)
            start, framing = 5, "confluent"
        else:
            raise DecodeError("bad_magic", f"first byte {data[0]:02X} is neither C3 (single-object) nor 00 (Confluent)", data)
        body = io.BytesIO(data)
        body.seek(start)
        try:
            record = schemaless_reader(body, reader.writer, reader.reader)
        except EOFError as exc:
            raise DecodeError("truncated", f"body ended early: {exc or 'EOF'}", data) from exc
        except Exception as exc:  # fastavro raises many types on garbage
            raise DecodeError("undecodable", f"{type(exc).__name__}: {exc}", data) from exc
        if body.tell() != len(data):
            raise DecodeError("undecodable", f"{len(data) - body.tell()} trailing bytes after the record", data)
        if not isinstance(record, dict):
            raise DecodeError("undecodable", f"body decoded to {type(record).__name__}, not a record", data)
        return Decoded(reader.kind, record, reader.version, framing)

    def _fetch(self, schema_id: int, data: bytes) -> _Reader:
        if self.registry is None:
            raise DecodeError("unknown_schema", f"schema id {schema_id} and no schema registry configured", data)
        try:
            raw = self.registry.schema_by_id(schema_id)
        except RegistryError as exc:
            if exc.not_found:
                raise DecodeError("unknown_schema", f"schema id {schema_id} not in the registry", data) from exc
            raise
        if not isinstance(raw, dict) or raw.get("type") != "record" or "name" not in raw:
            raise DecodeError("unknown_schema", f"schema id {schema_id} is not a record schema", data)
        name = full_name(raw)
        kind = self.repo.kind_of(name)
        if kind is None:
            raise DecodeError("unknown_schema", f"schema id {schema_id} is {name}, not a lineage event", data)
        shipped = self._by_fp.get(fingerprint(raw))
        if shipped is not None:
            reader = shipped
        else:
            try:
                writer = parse(raw, f"registry schema {schema_id}")
            except SchemaError as exc:
                raise DecodeError("unknown_schema", str(exc), data) from exc
            reader = _Reader(kind, 0, writer, self.repo.latest(kind).parsed)
        self._by_id[schema_id] = reader
        return reader
