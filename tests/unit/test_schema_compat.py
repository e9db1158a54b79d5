"""Every shipped version reads every other (forward + backward), and the check can fail."""
from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from lineage.schemas import EVENT_KINDS, SchemaRepo, check_compatible, sample_records

REPO = SchemaRepo.load()
PAIRS = [
    pytest.param(w, r, id=f"{w.kind}-v{w.version}->v{r.version}")
    for kind in EVENT_KINDS
    for w, r in itertools.product(REPO.versions(kind), repeat=2)
]


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_shipped_versions_are_compatible_both_ways(writer: Any, reader: Any) -> None:
    assert check_compatible(writer.raw, reader.raw) == []
    assert check_compatible(reader.raw, writer.raw) == []


def _v1(kind: str) -> dict[str, Any]:
    return copy.deepcopy(REPO.versions(kind)[0].raw)


def _with_field(raw: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    evolved = copy.deepcopy(raw)
    evolved["fields"].append(field)
    return evolved


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_new_required_field_without_default_is_reported(kind: str) -> None:
    v1 = _v1(kind)
    v2 = _with_field(v1, {"name": "tenant", "type": "string", "doc": "Owning tenant."})
    problems = check_compatible(v1, v2)  # old data, new reader: nothing to fill `tenant` with
    assert problems and any("tenant" in p for p in problems), problems
    assert check_compatible(v2, v1) == []  # new data, old reader: the field is skipped


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_new_optional_field_with_default_is_compatible_both_ways(kind: str) -> None:
    v1 = _v1(kind)
    v2 = _with_field(v1, {"name": "tenant", "type": ["null", "string"], "default": None, "doc": "Owning tenant."})
    assert check_compatible(v1, v2) == []
    assert check_compatible(v2, v1) == []
    v3 = _with_field(v1, {"name": "priority", "type": "int", "default": 3, "doc": "Queue priority."})
    assert check_compatible(v1, v3) == [] and check_compatible(v3, v1) == []


def test_removing_a_field_without_default_breaks_old_readers() -> None:
    v1 = _v1("inference")
    v2 = copy.deepcopy(v1)
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "endpoint"]
    assert check_compatible(v2, v1)  # old readers need `endpoint` and have no default
    assert check_compatible(v1, v2) == []


def test_removing_a_field_with_default_is_compatible() -> None:
    v1 = _v1("inference")
    v2 = copy.deepcopy(v1)
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "regulatory_class"]
    assert check_compatible(v1, v2) == [] and check_compatible(v2, v1) == []


def test_type_change_is_reported() -> None:
    v1 = _v1("inference")
    v2 = copy.deepcopy(v1)
    next(f for f in v2["fields"] if f["name"] == "risk_score")["type"] = "string"
    assert check_compatible(v1, v2) and check_compatible(v2, v1)


def test_new_enum_symbol_relies_on_the_enum_default() -> None:
    v1 = _v1("dataset")
    v2 = copy.deepcopy(v1)
    v2["fields"][2]["type"]["symbols"].append("PAUSED")
    assert check_compatible(v2, v1) == []  # old readers map PAUSED to the enum default OTHER
    del v1["fields"][2]["type"]["default"]
    problems = check_compatible(v2, v1)
    assert problems and any("PAUSED" in p for p in problems), problems


def test_renamed_record_is_reported() -> None:
    v1 = _v1("inference")
    assert any("name differs" in p for p in check_compatible(v1, dict(v1, name="Prediction")))


def test_unparsable_schema_is_reported() -> None:
    v1 = _v1("inference")
    broken = _with_field(v1, {"name": "x", "type": "no_such_type"})
    assert check_compatible(v1, broken)


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_samples_cover_every_union_branch_and_enum_symbol(kind: str) -> None:
    samples = sample_records(REPO.latest(kind).raw)
    assert {s["correlation_id"] is None for s in samples} == {True, False}
    if kind == "inference":
        assert {s["feature_snapshot"] is None for s in samples} == {True, False}
    else:
        assert {s["eventType"] for s in samples} == {"START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"}
        assert {len(s["inputs"]) for s in samples} >= {0, 1, 2}
