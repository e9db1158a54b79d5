"""Tiered inference sampling: a pure, deterministic decision per prediction.

* consequential: risk score >= threshold, a consequential decision type, or a regulated class
  -> full lineage with the snapshot;
* flagged: the subject was flagged for review (``lineage flag``) -> full;
* sampled: routine, and the prediction id's hash falls under the configured rate -> full;
* routine: model version + timestamp + lineage, no snapshot (it stays in the encrypted hold
  topic until retention ends, so a later flag can still promote it).

The hash is SHA-256 of the prediction id, so every worker and every replay decides the same.
The decision is made by the compiled event path (``native/src/enrich.rs``); this module is its
Python face for tools and tests.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lineage_native

from lineage.settings import SamplingSettings


@dataclass(frozen=True, slots=True)
class Decision:
    tier: str
    reason: str

    @property
    def capture(self) -> bool:
        return self.tier != "routine"


def sampling_config(policy: SamplingSettings) -> dict[str, Any]:
    """``settings.sampling`` as the compiled event path takes it."""
    return {
        "risk_threshold": float(policy.risk_threshold),
        "consequential_decisions": sorted(policy.consequential_decisions),
        "regulated_classes": sorted(policy.regulated_classes),
        "routine_rate": float(policy.routine_rate),
    }


def sample_point(prediction_id: str) -> float:
    """Uniform in [0, 1), a pure function of the prediction id."""
    return lineage_native.sample_point(prediction_id)


def decide(event: Mapping[str, Any], policy: SamplingSettings, subject_flagged: bool = False) -> Decision:
    """``policy`` is ``settings.sampling``; ``event`` an inference record."""
    tier, reason = lineage_native.sampling_decision(dict(event), sampling_config(policy), subject_flagged)
    return Decision(tier, reason)
