"""The schema repository: every shipped ``avro/<kind>_event.v<N>.avsc``, parsed once.

Schemas are the source of truth; anything derived from them (record classes, ClickHouse
columns, PII routing) asks this module instead of copying field lists by hand.
Fingerprints are CRC-64-AVRO of the Parsing Canonical Form, as 8 little-endian bytes
(the Avro single-object encoding's byte order).
"""
from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from lineage.exceptions import SchemaError

EVENT_KINDS: tuple[str, ...] = ("dataset", "feature", "training", "inference")

#: The shipped schemas, inside the package so an installed SDK has them (`avro/` at the top
#: of the checkout is a link to this directory).
SHIPPED_DIR = Path(__file__).with_name("avro")

_FILE_RE = re.compile(r"^(?P<kind>[a-z]+)_event\.v(?P<version>[1-9][0-9]*)\.avsc$")

# --- CRC-64-AVRO (Rabin fingerprint), per the Avro specification ----------------------------

_CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_CRC64_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO of ``data`` as an unsigned 64-bit int (Java's ``parsingFingerprint64``, unsigned)."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint(schema: Mapping[str, Any] | str | list[Any]) -> bytes:
    """8-byte little-endian CRC-64-AVRO of the schema's Parsing Canonical Form."""
    return crc64_avro(canonical_form(schema).encode()).to_bytes(8, "little")


def canonical_form(schema: Mapping[str, Any] | str | list[Any]) -> str:
    """Parsing Canonical Form of a raw (unparsed) schema."""
    try:
        return str(to_parsing_canonical_form(dict(schema) if isinstance(schema, Mapping) else schema))
    except Exception as exc:  # fastavro raises several types for malformed schemas
        raise SchemaError(f"cannot canonicalise schema: {exc}") from exc


# --- shipped schemas --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippedSchema:
    """One ``.avsc`` file of the repository."""

    kind: str
    version: int
    path: Path
    raw: dict[str, Any]
    parsed: dict[str, Any]
    fingerprint: bytes
    full_name: str
    pii_fields: tuple[str, ...]

    @property
    def canonical_form(self) -> str:
        return canonical_form(self.raw)


def parse(raw: Mapping[str, Any], where: str = "schema") -> dict[str, Any]:
    """fastavro-parse a raw record schema with its own named-type scope."""
    try:
        parsed = fastavro.parse_schema(dict(raw), named_schemas={})
    except Exception as exc:  # SchemaParseError, UnknownType, ValueError...
        raise SchemaError(f"{where}: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaError(f"{where}: top-level type must be a record")
    return parsed


def full_name(raw: Mapping[str, Any]) -> str:
    """Fully qualified name of a named schema (namespace + name)."""
    name = str(raw["name"])
    if "." in name or not raw.get("namespace"):
        return name
    return f"{raw['namespace']}.{name}"


def pii_fields(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Dotted paths of every field carrying a ``"pii"`` attribute, nested records included."""
    named: dict[str, Mapping[str, Any]] = {}
    found: list[str] = []

    def visit_type(t: Any, prefix: str, namespace: str, seen: frozenset[str]) -> None:
        if isinstance(t, str):
            ref = named.get(t) or named.get(f"{namespace}.{t}")
            if ref is not None:
                visit_type(ref, prefix, namespace, seen)
            return
        if isinstance(t, list):
            for branch in t:
                visit_type(branch, prefix, namespace, seen)
            return
        if not isinstance(t, Mapping):
            return
        kind = t.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in t:
            ns = t.get("namespace") or namespace
            fname = str(t["name"]) if "." in str(t["name"]) else f"{ns}.{t['name']}"
            if fname in seen:
                return
            named[fname] = t
            seen = seen | {fname}
            namespace = fname.rsplit(".", 1)[0]
        if kind in ("record", "error"):
            for field in t.get("fields", []):
                path = f"{prefix}{field['name']}"
                if "pii" in field:
                    found.append(path)
                visit_type(field["type"], path + ".", namespace, seen)
        elif kind == "array":
            visit_type(t.get("items"), prefix, namespace, seen)
        elif kind == "map":
            visit_type(t.get("values"), prefix, namespace, seen)
        elif isinstance(kind, (dict, list)):
            visit_type(kind, prefix, namespace, seen)

    visit_type(raw, "", str(raw.get("namespace") or ""), frozenset())
    return tuple(dict.fromkeys(found))


def _load_file(path: Path) -> ShippedSchema:
    m = _FILE_RE.match(path.name)
    if m is None:
        raise SchemaError(f"{path}: schema files must be named <kind>_event.v<N>.avsc")
    kind, version = m["kind"], int(m["version"])
    if kind not in EVENT_KINDS:
        raise SchemaError(f"{path}: unknown event kind {kind!r} (known: {', '.join(EVENT_KINDS)})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: top-level JSON must be an object")
    parsed = parse(raw, str(path))
    return ShippedSchema(
        kind=kind,
        version=version,
        path=path,
        raw=raw,
        parsed=parsed,
        fingerprint=fingerprint(raw),
        full_name=full_name(raw),
        pii_fields=pii_fields(raw),
    )


class SchemaRepo:
    """All shipped versions of every event schema in one directory."""

    def __init__(self, schemas: list[ShippedSchema]) -> None:
        self._by_kind: dict[str, list[ShippedSchema]] = {}
        self._by_fp: dict[bytes, ShippedSchema] = {}
        for s in sorted(schemas, key=lambda s: (s.kind, s.version)):
            versions = self._by_kind.setdefault(s.kind, [])
            if versions and versions[0].full_name != s.full_name:
                raise SchemaError(
                    f"{s.path}: record name {s.full_name} differs from {versions[0].full_name} "
                    f"in {versions[0].path.name}; versions of one kind must keep their name"
                )
            versions.append(s)
            # Identical canonical forms decode identically; the newest version wins.
            self._by_fp[s.fingerprint] = s
        names: dict[str, str] = {}
        for kind, versions in self._by_kind.items():
            other = names.setdefault(versions[0].full_name, kind)
            if other != kind:
                raise SchemaError(f"kinds {other} and {kind} share record name {versions[0].full_name}")
        self._by_name = {v[0].full_name: k for k, v in self._by_kind.items()}

    @classmethod
    def load(cls, avro_dir: Path | None = None) -> SchemaRepo:
        """Load (once per resolved directory) every ``*.avsc`` below ``avro_dir``."""
        return _load_dir((avro_dir or SHIPPED_DIR).resolve())

    @property
    def kinds(self) -> tuple[str, ...]:
        """Kinds with at least one shipped version, in :data:`EVENT_KINDS` order."""
        return tuple(k for k in EVENT_KINDS if k in self._by_kind)

    def versions(self, kind: str) -> list[ShippedSchema]:
        """Every shipped version of ``kind``, ascending."""
        try:
            return list(self._by_kind[kind])
        except KeyError:
            raise SchemaError(f"no schema for event kind {kind!r}") from None

    def latest(self, kind: str) -> ShippedSchema:
        """The newest shipped version of ``kind``: what writers use and readers resolve to."""
        return self.versions(kind)[-1]

    def by_fingerprint(self, fp: bytes) -> ShippedSchema | None:
        return self._by_fp.get(bytes(fp))

    def kind_of(self, record_full_name: str) -> str | None:
        """Event kind whose record has this fully qualified name."""
        return self._by_name.get(record_full_name)

    def field_names(self, kind: str) -> list[str]:
        """Top-level field names of the latest version, in schema order."""
        return [f["name"] for f in self.latest(kind).raw["fields"]]

    def __iter__(self) -> Iterator[ShippedSchema]:
        for kind in self.kinds:
            yield from self._by_kind[kind]


@functools.cache
def _load_dir(avro_dir: Path) -> SchemaRepo:
    if not avro_dir.is_dir():
        raise SchemaError(f"schema directory {avro_dir} does not exist")
    return SchemaRepo([_load_file(p) for p in sorted(avro_dir.glob("*.avsc"))])


# --- compatibility ----------------------------------------------------------------------------


def sample_records(schema: Mapping[str, Any], count: int | None = None) -> list[dict[str, Any]]:
    """Deterministic records covering every union branch, enum symbol and empty/non-empty collection.

    Sample ``i`` takes branch ``i % len(branches)`` of each union and symbol ``i % len(symbols)``
    of each enum, so ``count`` (default: enough to reach every branch and symbol) samples
    exercise the whole schema. Used by :func:`check_compatible`.
    """
    parsed = parse(schema) if "__fastavro_parsed" not in schema else dict(schema)
    named: dict[str, Any] = parsed.get("__named_schemas", {})
    widest = 2

    def width(t: Any, seen: frozenset[str]) -> None:
        nonlocal widest
        if isinstance(t, str):
            if t in named and t not in seen:
                width(named[t], seen | {t})
        elif isinstance(t, list):
            widest = max(widest, len(t))
            for b in t:
                width(b, seen)
        elif isinstance(t, Mapping):
            if t.get("type") == "enum":
                widest = max(widest, len(t["symbols"]))
            for f in t.get("fields", []):
                width(f["type"], seen)
            for key in ("items", "values"):
                if key in t:
                    width(t[key], seen)

    width(parsed, frozenset())
    n = count if count is not None else widest + 1
    return [_sample(parsed, named, i, 0) for i in range(n)]


def _sample(t: Any, named: Mapping[str, Any], i: int, depth: int) -> Any:
    if isinstance(t, list):
        branch = t[i % len(t)]
        if depth > 8 and "null" in t:
            branch = "null"
        return _sample(branch, named, i, depth + 1)
    if isinstance(t, str):
        if t in named:
            return _sample(named[t], named, i, depth + 1)
        return _PRIMITIVE_SAMPLES[t](i)
    kind = t["type"]
    logical = t.get("logicalType")
    if kind == "record" or kind == "error":
        return {f["name"]: _sample(f["type"], named, i, depth + 1) for f in t["fields"]}
    if kind == "enum":
        return t["symbols"][i % len(t["symbols"])]
    if kind == "array":
        return [_sample(t["items"], named, i + k, depth + 1) for k in range(i % 3)]
    if kind == "map":
        return {f"k{k}": _sample(t["values"], named, i + k, depth + 1) for k in range(i % 3)}
    if kind == "fixed":
        return bytes([i % 256]) * int(t["size"])
    if logical in ("timestamp-micros", "timestamp-millis", "local-timestamp-micros", "local-timestamp-millis"):
        return 1_718_000_000_000_000 // (1000 if logical.endswith("millis") else 1) + i
    if logical == "uuid":
        return f"00000000-0000-4000-8000-{i:012d}"
    if logical in ("date", "time-millis", "time-micros"):
        return i
    if logical == "decimal":
        raise SchemaError("decimal samples are not supported")
    return _sample(kind, named, i, depth + 1)


_PRIMITIVE_SAMPLES: dict[str, Any] = {
    "null": lambda i: None,
    "boolean": lambda i: bool(i % 2),
    "int": lambda i: (-1) ** i * i * 1_000,
    "long": lambda i: (-1) ** i * i * 10**12,
    "float": lambda i: i + 0.5,
    "double": lambda i: i / 7,
    "bytes": lambda i: bytes(range(i % 5)),
    "string": lambda i: f"s{i}-é" * (i % 3),
}


def check_compatible(
    writer: Mapping[str, Any], reader: Mapping[str, Any], samples: int | None = None
) -> list[str]:
    """Problems reading data written with ``writer`` through ``reader`` (empty list: compatible).

    Writes :func:`sample_records` of the writer schema and reads each back with fastavro's
    schema resolution. Both arguments are raw or parsed schemas. Run it both ways for
    full (forward + backward) compatibility.
    """
    try:
        w = parse(writer, "writer") if "__fastavro_parsed" not in writer else dict(writer)
        r = parse(reader, "reader") if "__fastavro_parsed" not in reader else dict(reader)
    except SchemaError as exc:
        return [str(exc)]
    problems: list[str] = []
    seen: set[str] = set()
    if full_name(w) != full_name(r):
        problems.append(f"record name differs: writer {full_name(w)}, reader {full_name(r)}")
    for n, record in enumerate(sample_records(w, samples)):
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, w, record)
        except Exception as exc:
            raise SchemaError(f"sample {n} does not fit its own writer schema: {exc}") from exc
        data = buf.getvalue()
        src = io.BytesIO(data)
        try:
            fastavro.schemaless_reader(src, w, r)
        except Exception as exc:  # SchemaResolutionError, and anything a bad resolution trips on
            problem = f"{type(exc).__name__}: {exc}"
            if problem not in seen:
                seen.add(problem)
                problems.append(f"sample {n}: {problem}")
            continue
        if src.tell() != len(data):
            problems.append(f"sample {n}: reader consumed {src.tell()} of {len(data)} bytes")
    return problems
