"""The metrics topic's record: ``{name, labels, ts, value}`` as JSON, one point per message.

Workers, the monitor and the emitter SDK all publish through :func:`metric_record`; the sink
writes each record as one ``pipeline_metrics`` row and the monitor reads the producer figures
back for the spool-depth alert.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

import orjson

#: Content type of the Prometheus text exposition (every `/metrics` page).
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def rfc3339(us: int) -> str:
    """Microseconds since the epoch as an RFC 3339 UTC timestamp."""
    dt = datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def metric_record(name: str, labels: Mapping[str, str], ts: float, value: float) -> bytes:
    """One metrics-topic record at ``ts`` (seconds since the epoch)."""
    return orjson.dumps({"name": name, "labels": dict(labels), "ts": rfc3339(int(ts * 1_000_000)), "value": value})
