"""Tiered inference sampling: a pure, deterministic decision per prediction.

* consequential: risk score >= threshold, a consequential decision type, or a regulated class
  -> full lineage with the snapshot;
* flagged: the subject was flagged for review (``lineage flag``) -> full;
* sampled: routine, and the prediction id's hash falls under the configured rate -> full;
* routine: model version + timestamp + lineage, no snapshot (it stays in the encrypted hold
  topic until retention ends, so a later flag can still promote it).

The hash is SHA-256 of the prediction id, so every worker and every replay decides the same.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lineage.settings import SamplingSettings


@dataclass(frozen=True, slots=True)
class Decision:
    tier: str
    reason: str

    @property
    def capture(self) -> bool:
        return self.tier != "routine"


def sample_point(prediction_id: str) -> float:
    """Uniform in [0, 1), a pure function of the prediction id."""
    digest = hashlib.sha256(prediction_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def decide(event: Mapping[str, Any], policy: SamplingSettings, subject_flagged: bool = False) -> Decision:
    """``policy`` is ``settings.sampling``; ``event`` an inference record."""
    score = float(event["risk_score"])
    decision = str(event["decision_type"]).lower()
    regulated = (event.get("regulatory_class") or "").lower()
    if score >= policy.risk_threshold:
        return Decision("consequential", f"risk_score {score:.3f} >= {policy.risk_threshold}")
    if decision in policy.consequential_decisions:
        return Decision("consequential", f"decision_type {decision}")
    if regulated and regulated in policy.regulated_classes:
        return Decision("consequential", f"regulatory_class {regulated}")
    if subject_flagged:
        return Decision("flagged", "subject flagged for review")
    point = sample_point(event["prediction_id"])
    if point < policy.routine_rate:
        return Decision("sampled", f"hash {point:.5f} < rate {policy.routine_rate}")
    return Decision("routine", f"hash {point:.5f} >= rate {policy.routine_rate}")
