"""Compiled OpenLineage conversion: the same (kind, record) or the same dead-letter reason and
detail as the reference path (``tests/reference/openlineage_convert.py``: the SDK converter, the codec, fastavro), for the sample events, the golden
inputs, the converter's own test inputs and many generated mutations of them."""
from __future__ import annotations

import base64
import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from lineage.codec import Codec
from lineage.schemas import SchemaRepo
from lineage_native import _core
from producers.exceptions import OpenLineageError
from producers.openlineage import from_openlineage
from stream_apps.exceptions import Rejected
from tests.reference.openlineage_convert import ReferenceConverter

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "data" / "openlineage").glob("*.json"))
GOLDEN = ROOT / "golden" / "event_path.json"
REPO = SchemaRepo.load()
SCHEMAS = {kind: json.dumps(REPO.latest(kind).raw) for kind in ("dataset", "feature", "training", "inference")}
PY = ReferenceConverter(Codec())
RUN_ID = "0190c3a2-1111-7000-8000-000000000001"


def python_outcome(raw: bytes) -> tuple[str, str, str]:
    """("ok", kind, repr(record)) or ("refused", reason, detail), as the worker sees it."""
    try:
        kind, record = PY.convert(raw)
    except Rejected as exc:
        return ("refused", exc.reason, exc.detail)
    except Exception as exc:  # the worker dead-letters these as internal errors
        return ("refused", "internal_error", f"{type(exc).__name__} while processing")
    return ("ok", kind, repr(record))


def native_outcome(raw: bytes) -> tuple[str, str, str]:
    try:
        kind, record = _core._debug_convert(raw, SCHEMAS)
    except ValueError as exc:
        reason, _, detail = str(exc).partition(": ")
        return ("refused", reason, detail)
    return ("ok", kind, repr(record))


def same(raw: bytes) -> tuple[str, str, str]:
    want = python_outcome(raw)
    got = native_outcome(raw)
    assert got == want, raw[:300]
    return want


def _golden_inputs() -> list[bytes]:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return [base64.b64decode(m["value"]) for v in doc["vectors"] for m in v["messages"]
            if m["topic"] == "openlineage.events" and m["value"] is not None]


def _run_event(**facets: Any) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": "2026-06-15T10:00:00.123456+02:00",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": RUN_ID, "facets": {"parent": {"run": {"runId": "0190c3a2-1111-7000-8000-0000000000ff"}}, **facets}},
        "job": {"namespace": "airflow", "name": "dag.orders", "facets": {"jobType": {"jobType": "BATCH"}}},
        "inputs": [{"namespace": "postgres://db:5432", "name": "shop.public.orders",
                    "facets": {"version": {"datasetVersion": "v9"}}, "inputFacets": {"stats": {"rows": 3}}}],
        "outputs": [{"namespace": "s3://lake", "name": "orders/2026-06-15", "facets": {"schema": {"fields": [{"name": "é", "type": 1.5}]}}}],
    }


BASES: list[dict[str, Any]] = [
    _run_event(),
    _run_event(training={"model_name": "credit", "model_version": 3, "artifact_digest": "sha256:ab", "code_version": "abc",
                         "feature_sets": [{"name": "fs", "version": 2}], "dataset_digests": {"d": 1},
                         "hyperparameters": {"lr": 0.01, "opt": "adam", "layers": [1, 2]}, "metrics": {"auc": "0.91", "loss": 1}}),
    _run_event(feature_set={"name": "fs", "version": 3, "features": ["a", 1, None], "entity": "customer"}),
    _run_event(inference={"model_name": "credit", "model_version": "3", "prediction_id": "p-1", "decision_type": "deny",
                          "risk_score": 0.93, "subject_id": "s-1", "regulatory_class": "high", "training_run_id": RUN_ID,
                          "feature_snapshot": {"feature_set": {"name": "fs", "version": 1},
                                               "values": {"income": 52000, "name": "Zoë", "flags": [True, None]}}}),
    _run_event(inference={"model_name": "credit", "model_version": "3", "prediction_id": "p-2", "decision_type": "allow",
                          "risk_score": "0.1", "sealed": "v1.sealed-envelope", "_private": 1}),
    _run_event(lineage={"class": "training"}, training={"model_name": "m", "model_version": "1"}),
]


def _convert_test_inputs() -> list[dict[str, Any]]:
    """The inputs the Python converter's own unit tests use (sample events with their variants)."""
    out = [json.loads(p.read_text(encoding="utf-8")) for p in SAMPLES]
    out += copy.deepcopy(BASES)
    for facets, job_facets in [
        ({"lineage": {"class": "training"}, "training": {"model_name": "m", "model_version": "1"}}, {}),
        ({"feature_set": {"name": "fs", "version": "3"}}, {"jobType": {"jobType": "FEATURE", "processingType": "BATCH"}}),
        ({"lineage": {"class": "bogus"}}, {}),
        ({"inference": {"model_name": "m"}}, {}),
        ({}, {"jobType": {"jobType": "scoring"}, "inference": {"model_name": "m", "model_version": "1", "prediction_id": "p",
                                                                "decision_type": "d", "risk_score": 1, "subject_id": 7}}),
    ]:
        ev = _run_event(**facets)
        ev["job"]["facets"].update(job_facets)
        out.append(ev)
    return out


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_events(path: Path) -> None:
    same(path.read_bytes())


def test_golden_inputs() -> None:
    inputs = _golden_inputs()
    assert inputs
    outcomes = {same(raw)[0] for raw in inputs}
    assert "ok" in outcomes


@pytest.mark.parametrize("event", _convert_test_inputs(), ids=lambda e: str(sorted(e["run"].get("facets", {})) if "run" in e else "static"))
def test_converter_inputs(event: dict[str, Any]) -> None:
    same(json.dumps(event).encode())
    # The event-level port alone gives the converter's own result or error text.
    try:
        want: Any = from_openlineage(copy.deepcopy(event))
    except OpenLineageError as exc:
        with pytest.raises(ValueError) as got:
            _core._debug_from_openlineage(event)
        assert str(got.value) == str(exc)
        return
    assert repr(_core._debug_from_openlineage(event)) == repr(want)


@pytest.mark.parametrize("raw", [
    b"", b" ", b"{", b'{"a":', b"nul", b"x", b'{"a":1}x', b"[1,]", b'{"a" 1}', b'{"a":tru}', b'{"a":1,}', b"[1 2]",
    b'"abc', b"[+1]", b"[.5]", b"[-.5]", b"[-]", b"[1.]", b"[1e+]", b"[07]", b"[NaN]", b"[n]", b'["a\x01"]', b'["\\x"]',
    b"{1:2}", b"[1]]", b"[tx]", b'"\\ud800"', b'"\\ud800x"', b'"\\ud800\\u0041"', b'"\\udc00"', b"\xff", b"[]", b"3", b'"text"', b"null", b"1e400", b'{"run": {}}', b"{}",
])
def test_json_errors(raw: bytes) -> None:
    same(raw)


def test_crashes_of_the_python_path_are_internal_errors() -> None:
    ev = _run_event()
    ev["eventType"] = ["COMPLETE"]
    assert same(json.dumps(ev).encode()) == ("refused", "internal_error", "TypeError while processing")


# --- generated mutations --------------------------------------------------------------------

KEYS = ["run", "job", "dataset", "eventType", "eventTime", "producer", "schemaURL", "event_id", "inputs", "outputs", "facets",
        "runId", "namespace", "name", "version", "lineage", "class", "eventClass", "jobType", "inference", "training",
        "feature_set", "parent", "sourceCodeLocation", "model_name", "model_version", "prediction_id", "decision_type",
        "risk_score", "subject_id", "sealed", "feature_snapshot", "values", "features", "entity", "metrics",
        "hyperparameters", "dataset_digests", "feature_sets", "code_version", "regulatory_class", "training_run_id",
        "artifact_digest", "endpoint", "inputFacets", "outputFacets", "datasetVersion", "_x"]
TEXTS = ["", "x", "COMPLETE", "START", "OTHER", "bogus", "training", "inference", "feature", "dataset", "TRAINING",
         "scoring", "é\u2028\x7f'\"\\", "\U0001f600 \u00a0", "nan", " 1_0.5 ", "-inf", "1e5", "0x1", RUN_ID,
         "{0190c3a2111170008000000000000001}", "urn:uuid:" + RUN_ID, "not-a-uuid", "2026-06-15T10:00:00Z",
         "2026-06-15", "\u0000ctl\t", "a" * 80]


def random_time(rnd: random.Random) -> str:
    date = rnd.choice([
        f"{rnd.randint(0, 9999):04d}-{rnd.randint(0, 13):02d}-{rnd.randint(0, 32):02d}",
        f"{rnd.randint(1, 9999):04d}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}",
        f"{rnd.randint(1, 9999):04d}-W{rnd.randint(0, 54):02d}-{rnd.randint(0, 8)}",
        f"{rnd.randint(1, 9999):04d}W{rnd.randint(0, 54):02d}{rnd.choice(['', str(rnd.randint(1, 7))])}",
        "2026-06-15", "1970-01-01", "0001-01-01", "9999-12-31",
    ])
    if rnd.random() < 0.2:
        return date
    sep = rnd.choice(["T", "T", " ", "x", "é", ""])
    parts = [f"{rnd.randint(0, 25):02d}"]
    colon = rnd.choice([":", ":", ""])
    for _ in range(rnd.randint(0, 2)):
        parts.append(f"{rnd.randint(0, 61):02d}")
    t = colon.join(parts)
    if rnd.random() < 0.5:
        t += rnd.choice([".", ","]) + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 10)))
    tz = rnd.choice(["", "Z", "z", "+00:00", "-05:30", "+10:00", "+0530", "+01", f"+{rnd.randint(0, 25):02d}:{rnd.randint(0, 61):02d}",
                     "-23:59:59.999999", "+24:00", "+01:00:30.5", "+1", "Z+01:00", "+01:00Z", "-"])
    text = date + sep + t + tz
    if rnd.random() < 0.1:
        i = rnd.randrange(len(text) + 1)
        text = text[:i] + rnd.choice("0123456789-:T.Z+ W") + text[i:]
    return text


def random_value(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if roll < 0.1:
        return None
    if roll < 0.2:
        return rnd.choice([True, False])
    if roll < 0.3:
        return rnd.choice([0, 1, -1, 7, 2**31, -(2**63), 2**63 - 1])
    if roll < 0.4:
        return rnd.choice([0.0, -0.0, 1.5, 1e16, 1e-5, 123456.789, 1e300, -2.5e-7, 0.1])
    if roll < 0.55:
        return rnd.choice(TEXTS)
    if roll < 0.62:
        return random_time(rnd)
    if depth > 2:
        return rnd.choice(TEXTS)
    if roll < 0.8:
        return [random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {rnd.choice(KEYS): random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))}


def _containers(node: Any, out: list[Any]) -> None:
    if isinstance(node, (dict, list)):
        out.append(node)
        for child in (node.values() if isinstance(node, dict) else node):
            _containers(child, out)


def mutate(event: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    ev = copy.deepcopy(event)
    for _ in range(rnd.randint(1, 3)):
        spots: list[Any] = []
        _containers(ev, spots)
        node = rnd.choice(spots)
        op = rnd.random()
        if isinstance(node, dict):
            if node and op < 0.3:
                del node[rnd.choice(list(node))]
            elif node and op < 0.7:
                node[rnd.choice(list(node))] = random_value(rnd)
            elif op < 0.8:
                node["eventTime"] = random_time(rnd)
            elif op < 0.85:
                node["huge"] = {f"k{i}": {"v": "x" * 100, "n": [i, i * 0.5, None]} for i in range(300)}
            else:
                node[rnd.choice(KEYS)] = random_value(rnd)
        elif node and op < 0.5:
            node[rnd.randrange(len(node))] = random_value(rnd)
        elif node and op < 0.7:
            node.pop(rnd.randrange(len(node)))
        else:
            node.append(random_value(rnd))
    return ev


def test_generated_mutations_match_the_python_path() -> None:
    rnd = random.Random(20260615)
    bases = _convert_test_inputs()
    outcomes: dict[str, int] = {}
    for i in range(10_000):
        ev = mutate(rnd.choice(bases), rnd)
        raw = json.dumps(ev, ensure_ascii=rnd.random() < 0.5).encode()
        if i % 10 == 0:  # damaged JSON text too
            cut = rnd.randrange(len(raw) + 1)
            raw = raw[:cut] + rnd.choice([b"", b"}", b",", b"x", b"\"", b" "]) + raw[cut + 1:]
        kind = same(raw)
        key = kind[1] if kind[0] == "ok" else f"{kind[1]}:{kind[2].split(':')[0]}"
        outcomes[key] = outcomes.get(key, 0) + 1
    # The generator reaches every class and the main refusals.
    assert {"dataset", "training", "feature", "inference"} <= set(outcomes), outcomes
    assert any(k.startswith("openlineage_invalid") for k in outcomes) and any(k.startswith("bad_json") for k in outcomes)


def test_generated_times_match_the_python_path() -> None:
    rnd = random.Random(7)
    ok = 0
    for _ in range(10_000):
        ev = _run_event()
        ev["eventTime"] = random_time(rnd)
        ok += same(json.dumps(ev).encode())[0] == "ok"
    assert ok > 500


def test_generated_json_fragments_match_the_python_path() -> None:
    """Short byte strings from JSON's alphabet (plus invalid UTF-8), alone and after an open object."""
    rnd = random.Random(9)
    alphabet = b'{}[]",:0123456789+.eEtrufalsn \\u\n\txyz\xc3\xa9\xff'
    for _ in range(10_000):
        raw = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        if rnd.random() < 0.5:
            raw = b'{"a":' + raw
        same(raw)


def _text(rnd: random.Random, n: int) -> str:
    """Random text from all planes (assigned or not), without lone surrogates."""
    out = []
    while len(out) < n:
        cp = rnd.choice([rnd.randint(0, 0x7F), rnd.randint(0x80, 0x3000), rnd.randint(0x3000, 0x10FFFF)])
        if not 0xD800 <= cp <= 0xDFFF:
            out.append(chr(cp))
    return "".join(out)


def test_generated_text_numbers_ids_and_nesting_match_the_python_path() -> None:
    """repr of any character, float() of odd number texts, UUID spellings, exact floats in facets,
    and nesting up to and past orjson's depth limit."""
    rnd = random.Random(5)
    for _ in range(3_000):
        inf = dict(BASES[3]["run"]["facets"]["inference"])
        inf["model_name"] = [_text(rnd, 3), {_text(rnd, 2): 1.5e-7}]
        inf["risk_score"] = rnd.choice([
            _text(rnd, 2), f" {rnd.randint(0, 9)}_{rnd.randint(0, 9)}.{rnd.randint(0, 9)}e{rnd.randint(-3, 3)} ",
            "1__0", "_1", "1_", ".e1", "1e", "+.5", "-.", "infinity", "-NaN", "iNf", "\u00a01.5\u2003"])
        same(json.dumps(_run_event(inference=inf)).encode())
        ev = _run_event()
        ev["run"]["runId"] = rnd.choice([
            "  " + RUN_ID.replace("-", "") + " ", "0x" + "a" * 30, "+" + "a" * 31, "-" + "0" * 31, "{{" + RUN_ID + "}",
            "urn:uuid:" + RUN_ID.upper(), "0_" + "a" * 30, "a_" * 16, _text(rnd, 32)])
        same(json.dumps(ev).encode())
        ev = _run_event()
        ev["run"]["facets"]["numbers"] = {"f": rnd.random() * 10 ** rnd.randint(-30, 30), "n": rnd.choice([-(2**63), 10**30]),
                                          "s": _text(rnd, 5)}
        same(json.dumps(ev, ensure_ascii=rnd.random() < 0.5).encode())
    # Below Python's own recursion limit (its json.dumps of a facet fails near 1,000 levels),
    # and past orjson's depth limit of 1,024.
    for depth in (100, 129, 500, 1025, 3000):
        ev = _run_event()
        ev["run"]["facets"]["deep"] = "DEEP"
        levels = depth - 3  # the event, run and facets are three levels
        raw = json.dumps(ev).replace('"DEEP"', '{"a":' * levels + "1" + "}" * levels).encode()
        assert same(raw)[0] == ("ok" if depth <= 1024 else "refused")


@pytest.mark.parametrize("facets", [
    {"inference": {**BASES[3]["run"]["facets"]["inference"], "regulatory_class": 5}},
    {"inference": {**BASES[3]["run"]["facets"]["inference"], "regulatory_class": list(range(40)), "training_run_id": 1.5}},
    {"inference": {**BASES[3]["run"]["facets"]["inference"], "training_run_id": {"é\n": [True, None]}}},
    {"training": {"model_name": "m", "model_version": "1", "artifact_digest": False}},
    {"feature_set": {"name": "fs", "version": 1, "entity": ["a" * 70]}},
])
def test_schema_mismatches_are_explained_as_the_codec_does(facets: dict[str, Any]) -> None:
    outcome = same(json.dumps(_run_event(**facets)).encode())
    assert outcome[1] == "openlineage_invalid" and "does not match its schema" in outcome[2]
