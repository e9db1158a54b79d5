"""Avro wire format for lineage events: encode with the latest schema, decode either framing.

Framings (readers accept both, whatever is configured):

* Confluent: ``0x00`` + 4-byte big-endian schema id + Avro body, used when a Schema Registry
  is configured.
* Avro single-object encoding: ``0xC3 0x01`` + 8-byte little-endian CRC-64-AVRO fingerprint +
  Avro body, resolved against the shipped ``avro/`` schemas.

Decoding reads with the writer's schema and resolves to the latest shipped reader schema of
the same kind, so old and new producers can share a topic.
"""
from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastavro import schemaless_writer
from fastavro.validation import validate

from lineage.exceptions import EncodeError
from lineage.registry import SchemaRegistry
from lineage.schemas import SchemaRepo

if TYPE_CHECKING:
    from lineage.settings import Settings

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

Framing = Literal["single-object", "confluent"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded event. ``version`` is the writer's shipped schema version (0: not a shipped one)."""

    kind: str
    record: dict[str, Any]
    version: int
    framing: Framing


@dataclass(frozen=True, slots=True)
class _Writer:
    header: bytes
    schema: dict[str, Any]


class Codec:
    """Encodes and decodes lineage events. Thread-safe; build one per process and reuse it."""

    def __init__(
        self,
        repo: SchemaRepo | None = None,
        registry: SchemaRegistry | None = None,
        *,
        topic_prefix: str = "lineage",
    ) -> None:
        self.repo = repo if repo is not None else SchemaRepo.load()
        self.registry = registry
        self.topic_prefix = topic_prefix
        self._writers: dict[str, _Writer] = {}
        self._native: Any = None  # the compiled decoder, built on first use
        if registry is None:
            for kind in self.repo.kinds:
                latest = self.repo.latest(kind)
                self._writers[kind] = _Writer(SINGLE_OBJECT_MAGIC + latest.fingerprint, latest.parsed)

    @classmethod
    def from_settings(cls, settings: Settings) -> Codec:
        """Codec for ``settings``: Confluent framing when ``schema_registry_url`` is set."""
        return cls.shipped(settings.schema_registry_url, settings.topics.prefix)

    @classmethod
    def shipped(cls, registry_url: str | None, topic_prefix: str) -> Codec:
        """The schemas shipped in the package; Confluent framing through ``registry_url`` when given."""
        return cls(SchemaRepo.load(), SchemaRegistry(registry_url) if registry_url else None, topic_prefix=topic_prefix)

    def warm_up(self) -> None:
        """Register every kind's latest schema now (no-op without a registry).

        Call it at startup from synchronous code: otherwise the first encode of each kind makes
        a blocking HTTP call, and a registry outage shows up only then.
        """
        for kind in self.repo.kinds:
            if kind not in self._writers:
                self._register(kind)

    def latest_schema_texts(self) -> dict[str, str]:
        """Each event class's latest shipped schema as JSON text (the compiled event path parses them)."""
        return {kind: json.dumps(self.repo.latest(kind).raw) for kind in self.repo.kinds}

    def subject(self, kind: str) -> str:
        """Registry subject of ``kind`` (TopicNameStrategy: ``<prefix>.<kind>-value``)."""
        return f"{self.topic_prefix}.{kind}-value"

    # --- encode ---------------------------------------------------------------------------

    def encode(self, kind: str, record: Mapping[str, Any]) -> bytes:
        """Serialise ``record`` with the latest schema of ``kind``; :class:`EncodeError` if it does not fit."""
        writer = self._writers.get(kind) or self._register(kind)
        buf = io.BytesIO()
        buf.write(writer.header)
        try:
            schemaless_writer(buf, writer.schema, record, strict_allow_default=True)
        except Exception as exc:  # fastavro raises TypeError/ValueError/AttributeError/OverflowError...
            raise EncodeError(f"{kind} event does not match its schema: {self._explain(writer.schema, record, exc)}") from exc
        return buf.getvalue()

    def _register(self, kind: str) -> _Writer:
        latest = self.repo.latest(kind)  # SchemaError for an unknown kind
        if self.registry is None:  # writers are prebuilt without a registry; kept for completeness
            writer = _Writer(SINGLE_OBJECT_MAGIC + latest.fingerprint, latest.parsed)
        else:
            schema_id = self.registry.register(self.subject(kind), latest.raw)
            writer = _Writer(CONFLUENT_MAGIC + schema_id.to_bytes(4, "big"), latest.parsed)
        self._writers[kind] = writer
        return writer

    @staticmethod
    def _explain(schema: dict[str, Any], record: Any, exc: Exception) -> str:
        """Name the offending field(s); runs only after the writer failed, so encode stays fast."""
        named = schema.get("__named_schemas", {})
        try:
            problems = _locate(record, schema, named, "")
        except Exception:  # the explainer must never hide the writer's own error
            problems = []
        return "; ".join(problems[:5]) if problems else f"{type(exc).__name__}: {exc}"

    # --- decode ---------------------------------------------------------------------------

    def decode(self, data: bytes) -> Decoded:
        """Decode either framing into the latest reader schema of its kind, or raise :class:`DecodeError`.

        The decoder is the compiled event path's (:func:`lineage_native.event_decoder`): the worker,
        the tools and this method read events with one implementation. A registry that cannot
        answer raises :class:`~lineage.registry.RegistryError` (retry), never a decode error.
        """
        native = self._native
        if native is None:
            from lineage_native import event_decoder  # the emitter SDK encodes only: it never needs it

            native = self._native = event_decoder(self)
        kind, record, version, framing = native.decode(data)
        return Decoded(kind, record, version, framing)  # type: ignore[arg-type]


# --- encode error explanation (slow path only) ----------------------------------------------


def _describe(t: Any) -> str:
    if isinstance(t, list):
        return " | ".join(_describe(b) for b in t)
    if isinstance(t, dict):
        return str(t.get("logicalType") or t.get("name") or t["type"])
    return str(t)


def _fits(value: Any, t: Any, named: dict[str, Any]) -> bool:
    probe = {
        "type": "record",
        "name": "_probe",
        "fields": [{"name": "v", "type": t}],
        "__fastavro_parsed": True,
        "__named_schemas": named,
    }
    return bool(validate({"v": value}, probe, raise_errors=False, strict=True))


def _locate(value: Any, t: Any, named: dict[str, Any], path: str) -> list[str]:
    """Paths (``feature_snapshot.values[income]``) where ``value`` does not fit type ``t``."""
    if isinstance(t, str) and t in named:
        t = named[t]
    where = path or "record"
    if isinstance(t, dict) and t.get("type") in ("record", "error"):
        if not isinstance(value, Mapping):
            return [f"{where}: expected a {_describe(t)} record, got {type(value).__name__}"]
        fields = {f["name"]: f for f in t["fields"]}
        problems = [f"{path}{'.' if path else ''}{k}: not in the schema" for k in value if k not in fields]
        for name, f in fields.items():
            sub = f"{path}.{name}" if path else name
            if name not in value:
                if "default" not in f:
                    problems.append(f"{sub}: required field missing")
            else:
                problems.extend(_locate(value[name], f["type"], named, sub))
        return problems
    if _fits(value, t, named):
        return []
    if isinstance(t, list) and isinstance(value, Mapping):
        records = [b for b in t if isinstance(named.get(b) if isinstance(b, str) else b, dict)]
        if len(records) == 1:
            return _locate(value, records[0], named, path)
    if isinstance(t, dict) and t.get("type") == "array" and isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _locate(v, t["items"], named, f"{path}[{i}]")]
    if isinstance(t, dict) and t.get("type") == "map" and isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _locate(v, t["values"], named, f"{path}[{k}]")]
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return [f"{where}: expected {_describe(t)}, got {type(value).__name__} {shown}"]
