"""The lineage emitter SDK: what services import to publish lineage events.

    from producers import Emitter, EmitterConfig, InferenceEvent, adopt_http_headers
    emitter = Emitter(EmitterConfig(bootstrap_servers="kafka:9092"), name="fraud-api")
    emitter.emit(InferenceEvent(...))   # returns at once; never waits on the network

``EmitterConfig.from_env()`` reads the pipeline's ``LINEAGE_*`` variables instead.
"""
from __future__ import annotations

from producers.context import (
    adopt_http_headers,
    correlation,
    current_correlation_id,
    current_traceparent,
    outgoing_http_headers,
    trace_context,
)
from producers.config import EmitterConfig
from producers.emitter import Emitter, producer_config
from producers.events import (
    Dataset,
    DatasetEvent,
    FeatureEvent,
    FeatureSet,
    FeatureSetRef,
    FeatureSnapshot,
    InferenceEvent,
    Job,
    Run,
    Training,
    TrainingEvent,
    now_micros,
)
from producers.exceptions import (
    EmitterClosedError,
    EventTooLargeError,
    OpenLineageError,
    ProducerError,
    SpoolFullError,
)
from producers.uuid7 import uuid7

__all__ = [
    "Dataset",
    "DatasetEvent",
    "Emitter",
    "EmitterClosedError",
    "EmitterConfig",
    "EventTooLargeError",
    "FeatureEvent",
    "FeatureSet",
    "FeatureSetRef",
    "FeatureSnapshot",
    "InferenceEvent",
    "Job",
    "OpenLineageError",
    "ProducerError",
    "Run",
    "SpoolFullError",
    "Training",
    "TrainingEvent",
    "adopt_http_headers",
    "correlation",
    "current_correlation_id",
    "current_traceparent",
    "now_micros",
    "outgoing_http_headers",
    "producer_config",
    "trace_context",
    "uuid7",
]
