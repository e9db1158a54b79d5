"""Compiled decoder: the same record, version, framing and reason as the fastavro-based reference
decoder (``tests/reference/avro_decode.py``), for the golden inputs, for arbitrary bytes and for
damaged copies of valid encodings."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage.codec import Codec
from lineage.exceptions import DecodeError
from lineage.schemas import SchemaRepo
from lineage_native import Decoder, as_decoded, decoder_for
from tests.golden.event_path import GoldenRegistry
from tests.reference.avro_decode import ReferenceDecoder

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "event_path.json"


def _golden_values() -> list[bytes]:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    out = []
    for vector in doc["vectors"]:
        for m in vector["messages"]:
            if m["value"] is not None:
                out.append(base64.b64decode(m["value"]))
    return out


REPO = SchemaRepo.load()
REGISTRY = GoldenRegistry(REPO)


def _older_writers(values: list[bytes]) -> list[bytes]:
    """Each decodable golden record written again with every older shipped schema of its kind,
    in both framings, so that reader/writer resolution is compared too."""
    codec = Codec(REPO, None, topic_prefix="lineage")
    ids = {json.dumps(raw, sort_keys=True): i for i, raw in REGISTRY.by_id.items()}
    out = []
    for v in values:
        try:
            d = codec.decode(v)
        except DecodeError:
            continue
        for old in REPO.versions(d.kind):
            if old.version == d.version:
                continue
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, old.parsed, d.record)
            schema_id = ids[json.dumps(old.raw, sort_keys=True)]
            out.append(b"\xc3\x01" + old.fingerprint + buf.getvalue())
            out.append(b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue())
    return out


GOLDEN_VALUES = _golden_values()
VALUES = GOLDEN_VALUES + _older_writers(GOLDEN_VALUES)
CODEC = Codec(REPO, REGISTRY, topic_prefix="lineage")
NATIVE = decoder_for(CODEC, REGISTRY.by_id)
PLAIN_CODEC = Codec(REPO, None, topic_prefix="lineage")
PLAIN_NATIVE = decoder_for(PLAIN_CODEC)


_REFERENCE: dict[int, ReferenceDecoder] = {}


def outcome_py(codec: Codec, data: bytes) -> tuple[str, Any]:
    """What the fastavro-based reference decoder makes of ``data``."""
    ref = _REFERENCE.get(id(codec))
    if ref is None:
        ref = _REFERENCE[id(codec)] = ReferenceDecoder(codec)
    try:
        d = ref.decode(data)
    except DecodeError as exc:
        return ("error", exc.reason)
    return ("ok", (d.kind, d.record, d.version, d.framing))


def outcome_native(dec: Decoder, data: bytes) -> tuple[str, Any]:
    try:
        d = as_decoded(dec.decode(data))
    except DecodeError as exc:
        assert exc.raw == data
        return ("error", exc.reason)
    return ("ok", (d.kind, d.record, d.version, d.framing))


def test_golden_inputs_cover_both_framings_and_both_schema_versions() -> None:
    frames = {v[:1] for v in VALUES}
    assert {b"\x00", b"\xc3"} <= frames
    decoded = [o[1] for o in (outcome_py(CODEC, v) for v in VALUES) if o[0] == "ok"]
    kinds_versions = {(kind, version) for kind, _, version, _ in decoded}
    assert ("inference", 1) in kinds_versions and ("inference", 2) in kinds_versions


@pytest.mark.parametrize("index", range(len(VALUES)))
def test_golden_input_decodes_as_the_python_codec_does(index: int) -> None:
    data = VALUES[index]
    native, python = outcome_native(NATIVE, data), outcome_py(CODEC, data)
    assert native == python
    # repr also tells int from bool, str from bytes, the datetime's zone and the key order apart
    assert repr(native) == repr(python)


def test_batch_matches_single_decodes() -> None:
    batch = VALUES + [b"", b"\x01", b"\xc3\x02", b"\x00\x00\x00\x03\xe7\x02", VALUES[0][:-3]]
    got = NATIVE.decode_batch(batch)
    assert len(got) == len(batch)
    for data, item in zip(batch, got):
        if isinstance(item, DecodeError):
            assert item.raw == data
            assert ("error", item.reason) == outcome_py(CODEC, data)
        else:
            d = as_decoded(item)
            assert ("ok", (d.kind, d.record, d.version, d.framing)) == outcome_py(CODEC, data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x07abc", "bad_magic"),
        (b"\xc3\x02" + bytes(8), "bad_magic"),
        (b"\xc3", "truncated"),
        (b"\xc3\x01\x00", "truncated"),
        (b"\x00\x00\x01", "truncated"),
        (b"\xc3\x01" + bytes(8), "unknown_schema"),
        (b"\x00\x00\x00\x00\x07", "unknown_schema"),
    ],
)
def test_header_reasons_and_details_match(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as py_err:
        CODEC.decode(data)
    with pytest.raises(DecodeError) as native_err:
        NATIVE.decode(data)
    assert native_err.value.reason == py_err.value.reason == reason
    assert native_err.value.detail == py_err.value.detail


def test_confluent_id_without_a_map_entry_or_registry_is_unknown_schema() -> None:
    confluent = next(v for v in VALUES if v[:1] == b"\x00")
    with pytest.raises(DecodeError) as py_err:
        PLAIN_CODEC.decode(confluent)
    with pytest.raises(DecodeError) as native_err:
        PLAIN_NATIVE.decode(confluent)
    assert native_err.value.reason == py_err.value.reason == "unknown_schema"
    assert native_err.value.detail == py_err.value.detail


def test_resolver_supplies_unmapped_ids_once() -> None:
    confluent = next(v for v in VALUES if v[:1] == b"\x00")
    schema_id = int.from_bytes(confluent[1:5], "big")
    expected = CODEC.decode(confluent)
    full = decoder_for(CODEC, REGISTRY.by_id)
    calls: list[int] = []
    dec = decoder_for(PLAIN_CODEC)

    def resolve(i: int) -> tuple[str, int, str, str | None] | None:
        calls.append(i)
        if i != schema_id:
            return None
        raw = REGISTRY.by_id[i]
        latest = REPO.latest(expected.kind)
        reader = None if latest.raw == raw else json.dumps(latest.raw)
        return (expected.kind, expected.version, json.dumps(raw), reader)

    dec.set_resolver(resolve)
    assert as_decoded(dec.decode(confluent)) == expected == as_decoded(full.decode(confluent))
    assert as_decoded(dec.decode(confluent)) == expected
    assert calls == [schema_id]
    with pytest.raises(DecodeError) as err:
        dec.decode(b"\x00\x00\x00\x99\x99\x02")
    assert err.value.reason == "unknown_schema"


def test_trailing_bytes_are_undecodable() -> None:
    data = VALUES[0] + b"\x00"
    assert outcome_native(NATIVE, data) == outcome_py(CODEC, data) == ("error", "undecodable")


FUZZ = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=64))
def test_random_bytes_get_the_python_codecs_reason(data: bytes) -> None:
    assert outcome_native(NATIVE, data) == outcome_py(CODEC, data)


@FUZZ
@given(st.binary(max_size=64), st.sampled_from([b"\x00", b"\xc3\x01"]), st.integers(0, len(VALUES) - 1))
def test_valid_headers_with_random_bodies_get_the_python_codecs_reason(body: bytes, magic: bytes, index: int) -> None:
    source = VALUES[index]
    header = source[: 5 if magic == b"\x00" else 10] if source[:1] == magic[:1] else magic + bytes(8)
    data = header + body
    assert outcome_native(NATIVE, data) == outcome_py(CODEC, data)


@FUZZ
@given(st.data())
def test_damaged_encodings_get_the_python_codecs_outcome(data: st.DataObject) -> None:
    value = bytearray(data.draw(st.sampled_from(VALUES)))
    for _ in range(data.draw(st.integers(0, 3))):
        op = data.draw(st.sampled_from(["flip", "cut", "set", "drop"]))
        if not value:
            break
        at = data.draw(st.integers(0, len(value) - 1))
        if op == "flip":
            value[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            value[at] = data.draw(st.integers(0, 255))
        elif op == "drop":
            del value[at]
        else:
            del value[at:]
    raw = bytes(value)
    assert outcome_native(NATIVE, raw) == outcome_py(CODEC, raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(VALUES), st.binary(max_size=40)), max_size=20), st.data())
def test_fuzzed_batches_match_the_python_codec_item_by_item(items: list[bytes], data: st.DataObject) -> None:
    batch = [v[: data.draw(st.integers(0, len(v)))] for v in items]
    got = NATIVE.decode_batch(batch)
    assert len(got) == len(batch)
    for raw, item in zip(batch, got):
        if isinstance(item, DecodeError):
            assert item.raw == raw
            assert ("error", item.reason) == outcome_py(CODEC, raw)
        else:
            d = as_decoded(item)
            assert ("ok", (d.kind, d.record, d.version, d.framing)) == outcome_py(CODEC, raw)
