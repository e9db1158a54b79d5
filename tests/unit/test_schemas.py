"""The shipped schema repository: naming, docs, PII markers, fingerprints."""
from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from lineage.schemas import SHIPPED_DIR
from lineage.exceptions import SchemaError
from lineage.schemas import (
    EVENT_KINDS,
    SchemaRepo,
    canonical_form,
    crc64_avro,
    fingerprint,
    pii_fields,
)

AVRO_DIR = Path(__file__).resolve().parents[2] / "avro"  # the checkout's link to the shipped copy
SHIPPED = sorted(AVRO_DIR.glob("*.avsc"))

# Avro's share/test/data/schema-tests.txt: input, Parsing Canonical Form, and the fingerprint
# Java's SchemaNormalization.parsingFingerprint64 computes (a signed long).
AVRO_VECTORS: list[tuple[Any, str, int]] = [
    ("null", '"null"', 7195948357588979594),
    ("boolean", '"boolean"', -6970731678124411036),
    ("int", '"int"', 8247732601305521295),
    ("long", '"long"', -3434872931120570953),
    ("float", '"float"', 5583340709985441680),
    ("double", '"double"', -8181574048448539266),
    ("bytes", '"bytes"', 5746618253357095269),
    ("string", '"string"', -8142146995180207161),
    (["int"], '["int"]', -5232228896498058493),
    (["int", {"type": "boolean"}], '["int","boolean"]', 5392556393470105090),
    ({"fields": [], "type": "record", "name": "foo"}, '{"name":"foo","type":"record","fields":[]}', -4824392279771201922),
    (
        {"fields": [], "type": "record", "name": "foo", "namespace": "x.y"},
        '{"name":"x.y.foo","type":"record","fields":[]}',
        5916914534497305771,
    ),
    (
        {"fields": [], "type": "record", "name": "foo", "doc": "foo", "aliases": ["foo", "bar"]},
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        {
            "fields": [
                # The Avro file has "default": "true" (a string); fastavro rejects that default,
                # and defaults are not part of the canonical form, so the fingerprint is the same.
                {"type": "boolean", "aliases": [], "name": "f1", "default": True},
                {"order": "descending", "name": "f2", "doc": "Hello", "type": "int"},
            ],
            "type": "record",
            "name": "foo",
        },
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}',
        -4860222112080293046,
    ),
    (
        {"namespace": "x.y.z", "type": "enum", "name": "foo", "doc": "foo bar", "symbols": ["A1", "A2"]},
        '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
        -4448647247586288245,
    ),
    ({"name": "foo", "type": "fixed", "size": 15}, '{"name":"foo","type":"fixed","size":15}', 1756455273707447556),
    ({"items": {"type": "null"}, "type": "array"}, '{"type":"array","items":"null"}', -589620603366471059),
    ({"values": "string", "type": "map"}, '{"type":"map","values":"string"}', -8732877298790414990),
    (
        {"name": "PigValue", "type": "record", "fields": [{"name": "value", "type": ["null", "int", "long", "PigValue"]}]},
        '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]


def _fields(schema: Any, seen: set[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field of every record nested in a raw schema, with its dotted path."""
    seen = set() if seen is None else seen

    def walk(t: Any, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(t, list):
            for b in t:
                yield from walk(b, prefix)
        elif isinstance(t, dict):
            if t.get("type") == "record":
                if t["name"] in seen:
                    return
                seen.add(t["name"])
                for f in t["fields"]:
                    yield f"{prefix}{f['name']}", f
                    yield from walk(f["type"], f"{prefix}{f['name']}.")
            for key in ("items", "values"):
                if key in t:
                    yield from walk(t[key], prefix)

    yield from walk(schema, "")


# --- shipped files -------------------------------------------------------------------------


def test_every_kind_is_shipped() -> None:
    repo = SchemaRepo.load()
    assert repo.kinds == EVENT_KINDS
    assert {p.name for p in SHIPPED} >= {f"{k}_event.v1.avsc" for k in EVENT_KINDS}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_avsc_parses_with_fastavro(path: Path) -> None:
    raw = json.loads(path.read_text())
    parsed = fastavro.parse_schema(raw, named_schemas={})
    assert isinstance(parsed, dict) and parsed["type"] == "record"
    assert raw["namespace"] == "ai.lineage"
    assert raw.get("doc"), f"{path.name}: the record needs a doc"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_field_has_a_doc(path: Path) -> None:
    raw = json.loads(path.read_text())
    fields = list(_fields(raw))
    assert len(fields) > 5
    missing = [name for name, f in fields if not str(f.get("doc", "")).strip()]
    assert missing == [], f"{path.name}: fields without doc: {missing}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_event_has_an_event_id(path: Path) -> None:
    raw = json.loads(path.read_text())
    first = raw["fields"][0]
    assert (first["name"], first["type"]) == ("event_id", "string")


def test_pii_fields_of_shipped_schemas() -> None:
    repo = SchemaRepo.load()
    assert repo.latest("inference").pii_fields == ("subject_id", "feature_snapshot")
    for kind in ("dataset", "feature", "training"):
        assert repo.latest(kind).pii_fields == ()
    # Every field marked "pii" in any file is found, and nothing else.
    for s in repo:
        marked = tuple(name for name, f in _fields(s.raw) if "pii" in f)
        assert s.pii_fields == marked


def test_pii_fields_found_in_nested_and_referenced_records() -> None:
    raw = {
        "type": "record",
        "name": "Outer",
        "namespace": "t",
        "fields": [
            {"name": "id", "type": "string"},
            {
                "name": "people",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Person",
                        "fields": [
                            {"name": "email", "type": "string", "pii": "identifier"},
                            {"name": "age", "type": "int"},
                        ],
                    },
                },
            },
            {"name": "owner", "type": ["null", "Person"], "default": None},
            {"name": "notes", "type": {"type": "map", "values": "string"}, "pii": "sensitive"},
        ],
    }
    assert pii_fields(raw) == ("people.email", "owner.email", "notes")


# --- repository ---------------------------------------------------------------------------


def test_repo_lookups() -> None:
    repo = SchemaRepo.load()
    for kind in EVENT_KINDS:
        latest = repo.latest(kind)
        versions = repo.versions(kind)
        assert versions[-1] is latest
        assert [v.version for v in versions] == sorted(v.version for v in versions)
        assert latest.kind == kind
        assert latest.path.name == f"{kind}_event.v{latest.version}.avsc"
        assert len(latest.fingerprint) == 8
        assert repo.by_fingerprint(latest.fingerprint) is latest
        assert repo.kind_of(latest.full_name) == kind
        assert latest.full_name == f"ai.lineage.{kind.capitalize()}Event"
        assert latest.parsed["__fastavro_parsed"]
    assert repo.by_fingerprint(b"\0" * 8) is None
    fps = [s.fingerprint for s in repo]
    assert len(set(fps)) == len(fps)


def test_field_names_come_from_the_avsc() -> None:
    repo = SchemaRepo.load()
    for kind in EVENT_KINDS:
        raw = json.loads(repo.latest(kind).path.read_text())
        assert repo.field_names(kind) == [f["name"] for f in raw["fields"]]
    assert repo.field_names("inference")[:3] == ["event_id", "correlation_id", "event_time"]
    assert "eventType" in repo.field_names("dataset")


def test_unknown_kind_is_a_schema_error() -> None:
    repo = SchemaRepo.load()
    with pytest.raises(SchemaError, match="nonsense"):
        repo.latest("nonsense")
    with pytest.raises(SchemaError):
        repo.versions("nonsense")
    with pytest.raises(SchemaError):
        repo.field_names("nonsense")


def test_load_is_cached_per_resolved_directory(tmp_path: Path) -> None:
    assert SchemaRepo.load() is SchemaRepo.load(AVRO_DIR)
    assert SchemaRepo.load(AVRO_DIR / ".." / "avro") is SchemaRepo.load()
    shutil.copy(AVRO_DIR / "inference_event.v1.avsc", tmp_path)
    other = SchemaRepo.load(tmp_path)
    assert other is not SchemaRepo.load() and other.kinds == ("inference",)


def test_versions_sort_numerically(tmp_path: Path) -> None:
    raw = json.loads((AVRO_DIR / "inference_event.v1.avsc").read_text())
    for n in (1, 2, 10):
        evolved = dict(raw, fields=raw["fields"] + [{"name": f"x{n}", "type": "int", "default": n, "doc": "x"}])
        (tmp_path / f"inference_event.v{n}.avsc").write_text(json.dumps(evolved))
    repo = SchemaRepo.load(tmp_path)
    assert [s.version for s in repo.versions("inference")] == [1, 2, 10]
    assert repo.latest("inference").version == 10
    assert repo.field_names("inference")[-1] == "x10"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("inference.avsc", "{}", "must be named"),
        ("inference_event.v0.avsc", "{}", "must be named"),
        ("payment_event.v1.avsc", "{}", "unknown event kind"),
        ("inference_event.v1.avsc", "{not json", "inference_event.v1.avsc"),
        ("inference_event.v1.avsc", '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}', "nope"),
        ("inference_event.v1.avsc", '"string"', "object"),
    ],
)
def test_bad_files_are_schema_errors(tmp_path: Path, name: str, content: str, match: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(SchemaError, match=match):
        SchemaRepo.load(tmp_path)


def test_renamed_record_between_versions_is_rejected(tmp_path: Path) -> None:
    raw = json.loads((AVRO_DIR / "inference_event.v1.avsc").read_text())
    (tmp_path / "inference_event.v1.avsc").write_text(json.dumps(raw))
    (tmp_path / "inference_event.v2.avsc").write_text(json.dumps(dict(raw, name="Prediction")))
    with pytest.raises(SchemaError, match="keep their name"):
        SchemaRepo.load(tmp_path)


def test_missing_directory_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="does not exist"):
        SchemaRepo.load(tmp_path / "absent")


# --- fingerprints -------------------------------------------------------------------------


def test_crc64_of_empty_input_is_the_seed() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


@pytest.mark.parametrize(("schema", "canonical", "java_long"), AVRO_VECTORS, ids=lambda v: str(v)[:40])
def test_fingerprint_matches_avro_reference_vectors(schema: Any, canonical: str, java_long: int) -> None:
    assert canonical_form(schema) == canonical
    assert crc64_avro(canonical.encode()) == java_long & 0xFFFF_FFFF_FFFF_FFFF
    # Single-object encoding carries the 64-bit value little-endian.
    assert fingerprint(schema) == struct.pack("<q", java_long)


def test_int_fingerprint_byte_order() -> None:
    # 8247732601305521295 == 0x7275D51A3F395C8F; on the wire the low byte comes first.
    assert fingerprint("int") == bytes.fromhex("8f5c393f1ad57572")
    assert fingerprint("int") != (8247732601305521295).to_bytes(8, "big")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_fingerprints_agree_with_fastavro(path: Path) -> None:
    repo = SchemaRepo.load()
    shipped = next(s for s in repo if s.path == path.resolve())
    pcf = to_parsing_canonical_form(json.loads(path.read_text()))
    assert shipped.canonical_form == pcf
    assert "pii" not in pcf and "doc" not in pcf and "logicalType" not in pcf
    assert shipped.fingerprint.hex() == fastavro_fingerprint(pcf, "CRC-64-AVRO")


def test_doc_and_pii_attributes_do_not_change_the_fingerprint() -> None:
    raw = json.loads((AVRO_DIR / "inference_event.v2.avsc").read_text())
    stripped = dict(raw, doc="other", fields=[{k: v for k, v in f.items() if k not in ("doc", "pii")} for f in raw["fields"]])
    assert fingerprint(stripped) == SchemaRepo.load().latest("inference").fingerprint
    renamed = dict(raw, fields=[dict(raw["fields"][0], name="id")] + raw["fields"][1:])
    assert fingerprint(renamed) != fingerprint(raw)
