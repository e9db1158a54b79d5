"""The event path reproduces its golden vectors (``tests/golden/event_path.json``): fixed input
batches, each with the exact records, dead-letter reasons, counters and table updates the batch
processor produced when they were made. Any implementation of the per-event work is held to the
same file; a deliberate change of behaviour regenerates it (``python -m tests.golden.event_path``)
and the diff shows what changed."""
from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from golden.event_path import VECTORS, Vector, run_vector
from stream_apps.validation import REASONS

DOC = json.loads(VECTORS.read_text())
CASES = [Vector.from_json(v) for v in DOC["vectors"]]


def _roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


@pytest.mark.parametrize("vector", CASES, ids=[v.name for v in CASES])
def test_event_path_reproduces_the_vector(vector: Vector) -> None:
    fresh = Vector.from_json({**vector.as_json(), "expect": None})
    assert _roundtrip(run_vector(fresh)) == vector.expect


def _dead_letter_reasons() -> set[str]:
    return {value for v in CASES for r in (v.expect or {})["records"] for key, value in r["headers"] if key == "dlq.reason"}


def test_the_vectors_cover_every_dead_letter_reason() -> None:
    assert _dead_letter_reasons() == set(REASONS)


def test_the_vectors_cover_every_event_class_in_both_framings_and_openlineage() -> None:
    accepted: set[tuple[str, str]] = set()
    for v in CASES:
        counters = (v.expect or {})["counters"]
        for m in v.messages:
            raw = base64.b64decode(m["value"] or "")
            framing = {0xC3: "single-object", 0x00: "confluent", ord("{"): "openlineage"}.get(raw[0] if raw else -1)
            for name in counters:
                if name.startswith("accepted.") and framing and len(v.messages) == 1:
                    accepted.add((name.removeprefix("accepted."), framing))
    for kind in ("dataset", "feature", "training", "inference"):
        assert {(kind, "single-object"), (kind, "confluent")} <= accepted
    assert ("dataset", "openlineage") in accepted
    tiers = {name for v in CASES for name in (v.expect or {})["counters"] if name.startswith("tier.")}
    assert tiers == {"tier.routine", "tier.sampled", "tier.consequential", "tier.flagged"}


def test_a_changed_output_is_caught() -> None:
    """The comparison is not vacuous: a vector whose expected output is altered fails."""
    vector = next(v for v in CASES if v.name.startswith("training then predictions"))
    altered = _roundtrip(vector.expect)
    altered["records"][-1]["value"]["inference"]["tier"] = "routine"
    fresh = Vector.from_json({**vector.as_json(), "expect": None})
    assert _roundtrip(run_vector(fresh)) != altered
