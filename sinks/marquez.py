"""Marquez-compatible lineage reads, so tools written against Marquez's lineage API work.

``GET /api/v1/lineage?nodeId=dataset:NS:NAME&depth=N`` (or ``job:NS:NAME``) answers
``{"graph": [node, ...]}``: each node ``{"id", "type", "data", "inEdges", "outEdges"}``, an edge
``{"origin": ID, "destination": ID}`` in data-flow direction, types ``DATASET`` and ``JOB``.
Runs are folded into their jobs; feature sets, models and predictions are not Marquez nodes and
are left out (``lineage query`` shows them). ``GET /api/v1/column-lineage?nodeId=...`` (a
``datasetField:NS:NAME:FIELD`` or a dataset) answers the same shape with ``DATASET_FIELD`` nodes.

A node id's name is what follows its last ``:`` (a column id: the last two), so namespaces such as
``postgres://host:5432`` keep their colons; a name holding ``:`` cannot be addressed this way.
The graphs come from ``sinks/queries/marquez_lineage.sql`` and ``columns.sql``; this module
parses the request and shapes the rows (no I/O of its own: the caller passes ``run``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from lineage.graph import dataset_id, job_id
from sinks.clickhouse.client import QueryResult
from sinks.clickhouse.queries import FAR_FUTURE, Param, QuerySpec, get_query
from sinks.exceptions import QueryError

LINEAGE_PATH = "/api/v1/lineage"
COLUMN_LINEAGE_PATH = "/api/v1/column-lineage"
DEFAULT_DEPTH = 20
MAX_DEPTH = 100
KINDS = {"dataset": "DATASET", "job": "JOB"}

#: Runs a query (SQL text, parameters) read-only and returns its rows.
Runner = Callable[[str, Mapping[str, Any]], QueryResult]

LINEAGE_QUERY = QuerySpec("marquez_lineage", (Param("node_id"), Param("max_depth", int, "40")),
                          "the dataset/job graph around a node, as Marquez shows it")
_KNOWN = "SELECT count() FROM nodes WHERE node_id = {node_id:String}"


class NodeIdError(QueryError):
    """A nodeId, depth or flag this API cannot read (answered 400)."""


class NodeNotFound(QueryError):
    """No node with that id (answered 404, as Marquez does)."""


@dataclass(frozen=True, order=True)
class NodeRef:
    kind: str  # "dataset" or "job"
    namespace: str
    name: str

    @property
    def marquez_id(self) -> str:
        return f"{self.kind}:{self.namespace}:{self.name}"

    @property
    def graph_id(self) -> str:
        """The id of the node in the ``nodes`` / ``edges`` tables."""
        return (dataset_id if self.kind == "dataset" else job_id)(self.namespace, self.name)


def parse_node_id(node_id: str) -> NodeRef:
    """``dataset:NS:NAME`` or ``job:NS:NAME`` -> NodeRef (a one-line :class:`NodeIdError` otherwise)."""
    kind, sep, rest = node_id.partition(":")
    if not sep or kind not in KINDS:
        raise NodeIdError(f"nodeId must start with 'dataset:' or 'job:', got {node_id[:80]!r}")
    namespace, sep, name = rest.rpartition(":")
    if not sep or not namespace or not name:
        raise NodeIdError(f"nodeId must be KIND:NAMESPACE:NAME, got {node_id[:80]!r}")
    return NodeRef(kind, namespace, name)


def parse_field_id(node_id: str) -> tuple[NodeRef, str]:
    """``datasetField:NS:NAME:FIELD`` -> (dataset, field); ``dataset:NS:NAME`` -> (dataset, '')."""
    if node_id.startswith("datasetField:"):
        rest, sep, field = node_id.removeprefix("datasetField:").rpartition(":")
        if not sep or not field:
            raise NodeIdError(f"nodeId must be datasetField:NAMESPACE:NAME:FIELD, got {node_id[:80]!r}")
        ref = parse_node_id(f"dataset:{rest}")
        return ref, field
    ref = parse_node_id(node_id)
    if ref.kind != "dataset":
        raise NodeIdError(f"column lineage needs a datasetField: or dataset: nodeId, got {node_id[:80]!r}")
    return ref, ""


def parse_depth(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_DEPTH
    try:
        depth = int(value)
    except ValueError:
        raise NodeIdError(f"depth must be an integer 0..{MAX_DEPTH}, got {value[:40]!r}") from None
    if not 0 <= depth <= MAX_DEPTH:
        raise NodeIdError(f"depth must be an integer 0..{MAX_DEPTH}, got {depth}")
    return depth


def parse_flag(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise NodeIdError(f"{name} must be true or false, got {value[:40]!r}")


def _only(query: Mapping[str, str], allowed: Iterable[str]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise NodeIdError(f"unknown parameter(s) {', '.join(unknown)}; this endpoint takes {', '.join(allowed)}")


def _iso(value: Any) -> str | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_list(text: str) -> list[Any]:
    try:
        value = orjson.loads(text) if text else []
    except orjson.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def _node_data(row: Mapping[str, Any], ids: Mapping[str, NodeRef]) -> dict[str, Any]:
    ref = ids[row["node_id"]]
    attrs: Mapping[str, str] = row["attributes"] or {}
    base = {"id": {"namespace": ref.namespace, "name": ref.name}, "name": ref.name, "namespace": ref.namespace,
            "updatedAt": _iso(row["updated_at"])}
    if ref.kind == "job":
        refs = {"inputs": row["inputs"], "outputs": row["outputs"]}
        return {**base, "type": "STREAM" if row.get("processing_type") == "STREAMING" else "BATCH",
                "simpleName": ref.name,
                **{side: [{"namespace": ids[i].namespace, "name": ids[i].name} for i in refs[side] if i in ids]
                   for side in ("inputs", "outputs")}}
    fields: list[dict[str, Any]] = [{"name": str(f[0]), "type": str(f[1]) or None, "tags": [], "description": None}
              for f in _json_list(attrs.get("schema", "")) if isinstance(f, list) and len(f) == 2]
    tags = [t for t in attrs.get("tags", "").split(",") if t]
    return {**base, "type": "DB_TABLE", "physicalName": ref.name, "sourceName": ref.namespace, "fields": fields,
            "tags": tags, "currentVersion": row["version"] or None,
            "symlinks": [s for s in _json_list(attrs.get("symlinks", "")) if isinstance(s, str)]}


def lineage_document(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows of ``marquez_lineage.sql`` -> ``{"graph": [...]}``, nodes in id order, edges sorted."""
    ids = {r["node_id"]: NodeRef(r["node_type"], r["namespace"], r["name"]) for r in rows}
    graph = []
    for row in sorted(rows, key=lambda r: ids[r["node_id"]].marquez_id):
        me = ids[row["node_id"]].marquez_id
        ins = sorted(ids[i].marquez_id for i in row["inputs"] if i in ids)
        outs = sorted(ids[o].marquez_id for o in row["outputs"] if o in ids)
        graph.append({
            "id": me,
            "type": KINDS[row["node_type"]],
            "data": _node_data(row, ids),
            "inEdges": [{"origin": i, "destination": me} for i in ins],
            "outEdges": [{"origin": me, "destination": o} for o in outs],
        })
    return {"graph": graph}




def lineage(run: Runner, query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /api/v1/lineage``: the graph around ``nodeId`` (default depth 20): ``2 * depth + 1``
    hops, each dataset -> job or job -> dataset, so from a job its datasets, the jobs ``depth`` jobs
    away and their datasets."""
    _only(query, ("nodeId", "depth"))
    node_id = query.get("nodeId")
    if not node_id:
        raise NodeIdError("nodeId is required, e.g. nodeId=dataset:NAMESPACE:NAME")
    ref = parse_node_id(node_id)
    depth = parse_depth(query.get("depth"))
    # a job hop is two (dataset -> job -> dataset), and the datasets of the last jobs reached are shown
    rows = run(LINEAGE_QUERY.sql, {"node_id": ref.graph_id, "max_depth": 2 * depth + 1}).dicts()
    if not rows:
        raise NodeNotFound(f"node {node_id[:200]!r} not found")
    return lineage_document(rows)


def _field_id(namespace: str, dataset: str, field: str) -> str:
    return f"datasetField:{namespace}:{dataset}:{field}"


def column_document(start: tuple[NodeRef, str], upstream: Sequence[Mapping[str, Any]],
                    downstream: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows of ``columns.sql`` (both directions) -> ``{"graph": [...]}`` of ``DATASET_FIELD`` nodes.

    A hop is an edge from the input field to the field computed from it; a node's ``data``
    lists its ``inputFields`` with the transformation of each."""
    hops: dict[tuple[tuple[str, str, str], tuple[str, str, str]], list[Mapping[str, Any]]] = {}
    for row in upstream:
        src = (row["namespace"], row["dataset"], row["column"])
        dst = (row["via_namespace"], row["via_dataset"], row["via_column"])
        hops.setdefault((src, dst), []).append(row)
    for row in downstream:
        src = (row["via_namespace"], row["via_dataset"], row["via_column"])
        dst = (row["namespace"], row["dataset"], row["column"])
        hops.setdefault((src, dst), []).append(row)
    fields: set[tuple[str, str, str]] = {f for pair in hops for f in pair}
    ref, column = start
    if column:
        fields.add((ref.namespace, ref.name, column))
    graph = []
    for f in sorted(fields):
        me = _field_id(*f)
        ins = sorted((src, rows) for (src, dst), rows in hops.items() if dst == f)
        outs = sorted(dst for (src, dst) in hops if src == f)
        inputs = []
        for src, rows in ins:
            transformations = sorted(
                ({"type": r["transformation_type"], "subtype": r["subtype"], "description": "",
                  "masking": bool(r["masking"])} for r in rows), key=lambda t: (t["type"], t["subtype"]))
            inputs.append({"namespace": src[0], "dataset": src[1], "field": src[2],
                           "transformationDescription": None,
                           "transformationType": transformations[0]["type"] or None,
                           "transformations": transformations})
        graph.append({
            "id": me,
            "type": "DATASET_FIELD",
            "data": {"namespace": f[0], "dataset": f[1], "field": f[2], "fieldType": None,
                     "transformationDescription": None,
                     "transformationType": inputs[0]["transformationType"] if inputs else None,
                     "inputFields": inputs},
            "inEdges": [{"origin": _field_id(*src), "destination": me} for src, _ in ins],
            "outEdges": [{"origin": me, "destination": _field_id(*dst)} for dst in outs],
        })
    return {"graph": graph}


def column_lineage(run: Runner, query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /api/v1/column-lineage``: the fields a field (or every field of a dataset) is computed
    from, ``depth`` hops up (default 20), and with ``withDownstream=true`` what is computed from it."""
    _only(query, ("nodeId", "depth", "withDownstream"))
    node_id = query.get("nodeId")
    if not node_id:
        raise NodeIdError("nodeId is required, e.g. nodeId=datasetField:NAMESPACE:NAME:FIELD")
    ref, column = parse_field_id(node_id)
    depth = parse_depth(query.get("depth"))
    downstream = parse_flag(query.get("withDownstream"), "withDownstream")
    if not run(_KNOWN, {"node_id": ref.graph_id}).rows[0][0]:
        raise NodeNotFound(f"node {node_id[:200]!r} not found")
    spec = get_query("columns")

    def walk(direction: str) -> list[dict[str, Any]]:
        params = spec.bind({"namespace": ref.namespace, "name": ref.name, "column": column,
                            "direction": direction, "max_depth": str(depth), "as_of": FAR_FUTURE})
        return run(spec.sql, params).dicts()

    return column_document((ref, column), walk("upstream") if depth else [],
                           walk("downstream") if downstream and depth else [])
