"""Enrichment: deterministic correlation ids and the model-version -> training lineage join.

Correlation id, first match wins (so a replay yields the same id):
1. header ``correlation_id`` (the emitter SDK's propagation);
2. the event's own ``correlation_id`` field;
3. W3C ``traceparent`` header: the trace id as a UUID;
4. derived: UUIDv5 of the root run (OpenLineage ``parent`` facet's root, else the parent run,
   else the run) for run events; of model version + prediction id for inference events.

The compiled event path does this work (``native/src/enrich.rs``); this module is its Python face
for tools and tests.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import lineage_native

from stream_apps.models import ModelLineage


def correlation_id(kind: str, ev: Mapping[str, Any], headers: Sequence[tuple[str, bytes | None]]) -> tuple[str, str]:
    """(correlation id, where it came from: header|event|traceparent|derived)."""
    return lineage_native.correlation_id(kind, dict(ev), list(headers))


def model_key(model_name: str, model_version: str) -> str:
    return f"{model_name}@{model_version}"


def training_lineage(ev: Mapping[str, Any]) -> tuple[str, ModelLineage] | None:
    """Table entry a training event contributes: ``model@version`` -> its training run + feature sets."""
    found = lineage_native.training_lineage(dict(ev))
    return None if found is None else (found[0], cast(ModelLineage, found[1]))


def merge_lineage(current: ModelLineage | None, new: ModelLineage) -> ModelLineage:
    """A COMPLETE entry is never replaced by an earlier START/RUNNING of the same run."""
    return cast(ModelLineage, lineage_native.merge_lineage(dict(current) if current else None, dict(new)))
