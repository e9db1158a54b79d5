"""GraphRecord JSON -> column lists for each ClickHouse table (pure; no I/O).

Works on the decoded JSON dict rather than dataclasses (this is the sink's hot loop) and
tolerates unknown extra keys, so a newer producer never breaks an older sink.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
import pyarrow as pa

# Column order of each table as inserted (defaults such as ingested_at are left to ClickHouse).
RAW_COLUMNS = (
    "topic", "kafka_partition", "kafka_offset", "event_id", "kind", "event_type", "event_time",
    "correlation_id", "record", "prev_hash", "row_hash",
)
#: query_audit's stored columns: its readable ones are ALIAS expressions of ``record``.
AUDIT_COLUMNS = ("topic", "kafka_partition", "kafka_offset", "record", "prev_hash", "row_hash")
NODE_COLUMNS = ("node_id", "node_type", "namespace", "name", "version", "attributes", "event_id", "event_time")
EDGE_COLUMNS = ("src", "dst", "edge_type", "run_id", "src_version", "dst_version", "event_id", "event_time")
INFERENCE_COLUMNS = (
    "prediction_id", "event_id", "event_time", "model_name", "model_version", "endpoint", "decision_type",
    "risk_score", "regulatory_class", "subject_ref", "training_run_id", "feature_sets", "tier", "tier_reason",
    "snapshot_pointer", "snapshot_sha256", "lineage_complete", "unknown_model_version", "correlation_id", "extra",
)
TRAINING_COLUMNS = (
    "model_name", "model_version", "run_id", "event_id", "event_type", "event_time", "job", "code_version",
    "artifact_digest", "hyperparameters", "dataset_digests", "feature_sets", "input_datasets", "metrics",
)
METRIC_COLUMNS = ("name", "labels", "ts", "value")
ALERT_COLUMNS = (
    "alert_name", "state", "severity", "labels", "summary", "starts_at", "ends_at", "fingerprint", "updated_at",
)

_INFERENCE_KNOWN = set(INFERENCE_COLUMNS) | {"subject_id", "feature_snapshot"}
_NEVER_STORED = {"subject_id", "feature_snapshot"}  # PII: must never reach ClickHouse


def micros_to_dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)


_STR = pa.string()
_SMAP = pa.map_(pa.string(), pa.string())
_US = pa.timestamp("us", tz="UTC")
_MS = pa.timestamp("ms", tz="UTC")
#: Arrow type per column name (the sink inserts Arrow: several times faster than row values).
#: ``record`` is large_binary: pyarrow builds it from bytes objects ten times faster than binary.
ARROW_TYPES: dict[str, pa.DataType] = {
    "kafka_partition": pa.uint32(), "kafka_offset": pa.uint64(), "event_time": _US,
    "attributes": _SMAP, "risk_score": pa.float64(), "feature_sets": pa.list_(_STR),
    "lineage_complete": pa.uint8(), "unknown_model_version": pa.uint8(), "extra": _SMAP,
    "hyperparameters": _SMAP, "dataset_digests": _SMAP, "input_datasets": _SMAP,
    "metrics": pa.map_(pa.string(), pa.float64()), "labels": _SMAP, "ts": _MS, "value": pa.float64(),
    "record": pa.large_binary(), "starts_at": _MS, "ends_at": _MS, "updated_at": _MS, "last_offset": pa.uint64(),
    "first_offset": pa.uint64(),
}


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _s(v) for k, v in value.items()}


@dataclass
class TableRows:
    """Column-oriented rows for one table."""

    columns: tuple[str, ...]
    data: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.data:
            self.data = [[] for _ in self.columns]

    def __len__(self) -> int:
        return len(self.data[0])

    def append(self, *values: Any) -> None:
        for col, value in zip(self.data, values, strict=True):
            col.append(value)

    def to_arrow(self, exclude: tuple[str, ...] = ()) -> pa.Table:
        return pa.table(
            {
                name: pa.array(col, type=ARROW_TYPES.get(name, _STR))
                for name, col in zip(self.columns, self.data)
                if name not in exclude
            }
        )


@dataclass
class GraphRows:
    """Rows of one batch for every graph table."""

    nodes: TableRows = field(default_factory=lambda: TableRows(NODE_COLUMNS))
    edges: TableRows = field(default_factory=lambda: TableRows(EDGE_COLUMNS))
    inference: TableRows = field(default_factory=lambda: TableRows(INFERENCE_COLUMNS))
    training: TableRows = field(default_factory=lambda: TableRows(TRAINING_COLUMNS))

    def tables(self) -> dict[str, TableRows]:
        return {
            "nodes": self.nodes,
            "edges": self.edges,
            "inference_lineage": self.inference,
            "training_runs": self.training,
        }


def decode(value: bytes) -> dict[str, Any]:
    """The GraphRecord dict; raises ValueError/KeyError/TypeError when it is not one."""
    rec = orjson.loads(value)
    if not isinstance(rec, dict):
        raise TypeError("graph record is not a JSON object")
    for key in ("event_id", "kind", "event_time"):
        if key not in rec:
            raise KeyError(key)
    return rec


def add_record(rows: GraphRows, rec: Mapping[str, Any], with_graph: bool = True) -> None:
    """Append one record's inference and training rows, and (``with_graph``) its nodes and edges.

    The sink has ClickHouse parse nodes and edges out of the records (``derive``); this Python
    mapping stays as the reference the tests compare that SQL against. An edge carries
    the version of each endpoint as the same record states it (first node row with that id).
    """
    eid = rec["event_id"]
    ts = int(rec["event_time"])
    n_append, e_append = rows.nodes.append, rows.edges.append
    versions: dict[str, str] = {}
    for n in (rec.get("nodes") or ()) if with_graph else ():
        n_append(
            n["node_id"], n.get("node_type", ""), _s(n.get("namespace")), _s(n.get("name")),
            _s(n.get("version")), _str_map(n.get("attributes")), eid, ts,
        )
        versions.setdefault(n["node_id"], _s(n.get("version")))
    for e in (rec.get("edges") or ()) if with_graph else ():
        src, dst = e["src"], e["dst"]
        e_append(
            src, dst, e.get("edge_type", ""), _s(e.get("run_id")), versions.get(src, ""), versions.get(dst, ""), eid, ts
        )
    kind = rec["kind"]
    if kind == "inference":
        _add_inference(rows, rec, eid, ts)
    elif kind == "training":
        _add_training(rows, rec, eid, ts)


def _add_inference(rows: GraphRows, rec: Mapping[str, Any], eid: str, ts: int) -> None:
    payload = rec.get("payload") or {}
    inf: dict[str, Any] = {k: v for k, v in payload.items() if k not in _NEVER_STORED}
    inf.update(rec.get("inference") or {})
    if not inf.get("prediction_id"):
        return
    extra = {k: _s(v) for k, v in inf.items() if k not in _INFERENCE_KNOWN and not isinstance(v, (dict, list))}
    for k in ("event_id", "event_time", "producer"):
        extra.pop(k, None)
    fsets = inf.get("feature_sets") or []
    rows.inference.append(
        _s(inf["prediction_id"]), eid, ts, _s(inf.get("model_name")), _s(inf.get("model_version")),
        _s(inf.get("endpoint")), _s(inf.get("decision_type")), float(inf.get("risk_score") or 0.0),
        _s(inf.get("regulatory_class")), _s(inf.get("subject_ref")), _s(inf.get("training_run_id")),
        [f if isinstance(f, str) else f"{f.get('name')}@{f.get('version')}" for f in fsets],
        _s(inf.get("tier")), _s(inf.get("tier_reason")), _s(inf.get("snapshot_pointer")),
        _s(inf.get("snapshot_sha256")), 1 if inf.get("lineage_complete") else 0,
        1 if inf.get("unknown_model_version") else 0, _s(rec.get("correlation_id")), extra,
    )


def _add_training(rows: GraphRows, rec: Mapping[str, Any], eid: str, ts: int) -> None:
    payload = rec.get("payload") or {}
    tr = payload.get("training")
    if not isinstance(tr, Mapping) or not tr.get("model_name"):
        return
    run = payload.get("run") or {}
    job = payload.get("job") or {}
    inputs = {
        f"{d.get('namespace')}/{d.get('name')}": _s(d.get("version"))
        for d in payload.get("inputs") or ()
        if isinstance(d, Mapping)
    }
    metrics = {str(k): float(v) for k, v in (tr.get("metrics") or {}).items() if isinstance(v, (int, float))}
    rows.training.append(
        _s(tr["model_name"]), _s(tr.get("model_version")), _s(run.get("runId")), eid, _s(rec.get("event_type")),
        ts, f"{job.get('namespace', '')}/{job.get('name', '')}", _s(tr.get("code_version")),
        _s(tr.get("artifact_digest")), _str_map(tr.get("hyperparameters")), _str_map(tr.get("dataset_digests")),
        [f"{f.get('name')}@{f.get('version')}" for f in tr.get("feature_sets") or () if isinstance(f, Mapping)],
        inputs, metrics,
    )


def epoch_seconds(value: float) -> float:
    """An epoch number in s, ms, µs or ns (told apart by magnitude, valid 1973-5138) as seconds."""
    for scale in (1, 10**3, 10**6, 10**9):
        if abs(value) < 10**11 * scale:
            return value / scale
    raise ValueError(f"epoch timestamp out of range: {value}")


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(epoch_seconds(value), tz=timezone.utc)
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def metric_rows(out: TableRows, rec: Mapping[str, Any]) -> None:
    """One metrics-topic JSON object {name, labels, ts, value} (a list of them is also accepted)."""
    out.append(str(rec["name"]), _str_map(rec.get("labels")), _parse_time(rec["ts"]), float(rec["value"]))


def alert_rows(out: TableRows, rec: Mapping[str, Any]) -> None:
    """One alerts-topic JSON object; name/alert_name, state firing|resolved, labels, starts_at..."""
    state = str(rec.get("state") or rec.get("status") or "firing").lower()
    out.append(
        str(rec.get("alert_name") or rec.get("name") or rec.get("alertname")), state,
        _s(rec.get("severity")), _str_map(rec.get("labels")), _s(rec.get("summary")),
        _parse_time(rec.get("starts_at")) or datetime.now(timezone.utc), _parse_time(rec.get("ends_at")),
        _s(rec.get("fingerprint")), _parse_time(rec.get("updated_at")) or datetime.now(timezone.utc),
    )
