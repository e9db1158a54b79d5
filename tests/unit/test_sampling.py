"""Tier decisions: deterministic, configurable, and the routine rate holds on 100,000 ids."""
from __future__ import annotations

import uuid

from factories import inference_event as ev
from lineage.settings import SamplingSettings
from stream_apps.sampling import decide, sample_point

POLICY = SamplingSettings(routine_rate=0.02)


def test_consequential_rules_take_precedence() -> None:
    assert decide(ev("a", risk=0.8), POLICY).tier == "consequential"
    assert decide(ev("a", decision="DENY"), POLICY).tier == "consequential"
    assert decide(ev("a", regulatory_class="credit"), POLICY).tier == "consequential"
    assert decide(ev("a", risk=0.9), POLICY, subject_flagged=True).tier == "consequential"
    assert decide(ev("a"), POLICY, subject_flagged=True).tier == "flagged"


def test_thresholds_are_configuration() -> None:
    strict = SamplingSettings(risk_threshold=0.5, consequential_decisions=("review",), regulated_classes=())
    assert decide(ev("a", risk=0.6), strict).tier == "consequential"
    assert decide(ev("a", decision="deny"), strict).tier != "consequential"
    assert decide(ev("a", decision="review"), strict).reason == "decision_type review"


def test_routine_rate_and_determinism_on_100k() -> None:
    ids = [f"pred-{uuid.UUID(int=i * 7919 + 13)}" for i in range(100_000)]
    first = [decide(ev(i), POLICY) for i in ids]
    share = sum(d.tier == "sampled" for d in first) / len(ids)
    assert abs(share - 0.02) <= 0.003
    assert first == [decide(ev(i), POLICY) for i in ids]  # replay: identical decisions
    assert all(d.capture == (d.tier == "sampled") for d in first)


def test_rate_change_is_monotonic() -> None:
    ids = [f"x{i}" for i in range(20_000)]
    at2 = {i for i in ids if decide(ev(i), SamplingSettings(routine_rate=0.02)).tier == "sampled"}
    at5 = {i for i in ids if decide(ev(i), SamplingSettings(routine_rate=0.05)).tier == "sampled"}
    assert at2 <= at5  # raising the rate only adds captures


def test_sample_point_is_uniform_and_stable() -> None:
    assert sample_point("abc") == sample_point("abc")
    assert 0.0 <= sample_point("abc") < 1.0
