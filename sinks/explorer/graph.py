"""Pure logic of the explorer's graph answers: parameters, node kinds and grouping past the node cap.

Nothing here talks to the store, so it is tested as plain functions.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from lineage.redact import redact_text
from sinks.exceptions import QueryError

#: Node types the explorer knows (the prefixes of node ids, see ``lineage.graph``).
NODE_TYPES = ("dataset", "job", "run", "feature_set", "model", "model_version", "prediction")
DIRECTIONS = ("both", "upstream", "downstream")
MAX_ID = 2048


def node_type_of(node_id: str) -> str:
    """The type a node id names (``dataset:ns/name`` -> ``dataset``), or a one-line QueryError."""
    kind, sep, rest = node_id.partition(":")
    if not sep or not rest or kind not in NODE_TYPES or len(node_id) > MAX_ID:
        raise QueryError(f"not a node id: {node_id[:80]!r} (expected one of {', '.join(t + ':...' for t in NODE_TYPES)})")
    return kind


def parse_direction(value: str) -> str:
    if value not in DIRECTIONS:
        raise QueryError(f"direction must be one of {', '.join(DIRECTIONS)}, not {value[:40]!r}")
    return value


def parse_bounded(value: str, low: int, high: int, name: str) -> int:
    """An integer parameter in ``low..high``, else a one-line QueryError naming it."""
    try:
        n = int(value)
    except ValueError:
        raise QueryError(f"{name} must be an integer, not {value[:40]!r}") from None
    if not low <= n <= high:
        raise QueryError(f"{name} out of range {low}..{high}: {n}")
    return n


def parse_depth(value: str, maximum: int) -> int:
    return parse_bounded(value, 1, maximum, "depth")


@dataclass
class Graph:
    """A neighbourhood: nodes by id and edges (``src``, ``dst``, ``edge_type``, ``run_id``, ``time``)."""

    focus: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    def to_json(self, cap: int) -> dict[str, Any]:
        """The answer the page draws: the graph itself, or past ``cap`` nodes its groups."""
        if len(self.nodes) > cap:
            return {"focus": self.focus, "grouped": True, "cap": cap, "total_nodes": len(self.nodes),
                    "total_edges": len(self.edges), "truncated": self.truncated,
                    **group(self.focus, self.nodes, self.edges)}
        return {"focus": self.focus, "grouped": False, "cap": cap, "total_nodes": len(self.nodes),
                "total_edges": len(self.edges), "truncated": self.truncated,
                "nodes": list(self.nodes.values()), "edges": self.edges}


def group_key(node: Mapping[str, Any]) -> str:
    return f"group:{node['node_type']}|{node.get('namespace') or ''}"


def group(focus: str, nodes: Mapping[str, Mapping[str, Any]], edges: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Nodes grouped by (type, namespace) with counts; the focus node stays itself.

    Edges between groups are merged into one edge per (group, group) carrying how many edges it
    stands for; an edge inside one group is counted on the group (``internal_edges``).
    """
    where: dict[str, str] = {}
    groups: dict[str, dict[str, Any]] = {}
    out_nodes: list[dict[str, Any]] = []
    for node_id, node in nodes.items():
        if node_id == focus:
            where[node_id] = node_id
            out_nodes.append(dict(node))
            continue
        key = group_key(node)
        where[node_id] = key
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"node_id": key, "node_type": node["node_type"], "namespace": node.get("namespace") or "",
                               "name": f"{node['node_type']} ({node.get('namespace') or 'no namespace'})",
                               "group": True, "count": 0, "internal_edges": 0, "depth": node.get("depth", 0)}
        g["count"] += 1
        g["depth"] = min(g["depth"], node.get("depth", 0), key=abs)
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for edge in edges:
        a, b = where.get(edge["src"]), where.get(edge["dst"])
        if a is None or b is None:
            continue
        if a == b:
            groups[a]["internal_edges"] += 1
            continue
        m = merged.get((a, b))
        if m is None:
            m = merged[(a, b)] = {"src": a, "dst": b, "edge_type": edge["edge_type"], "count": 0, "run_id": "", "time": edge.get("time")}
        m["count"] += 1
    return {"nodes": out_nodes + sorted(groups.values(), key=lambda g: (g["depth"], g["node_id"])),
            "edges": list(merged.values())}


#: Facets the side panel shows, by the name OpenLineage gives them.
PANEL_FACETS = ("schema", "sql", "ownership", "tags", "documentation", "datasource", "jobType", "sourceCode",
                "sourceCodeLocation", "columnLineage", "version", "storage", "lifecycleStateChange")


def facets_of(payload: Any, node_type: str, namespace: str, name: str) -> dict[str, Any]:
    """The facets an event says about one dataset or job (only :data:`PANEL_FACETS`).

    A dataset's facets come from the ``inputs``/``outputs`` entry with its namespace and name (input
    and output facets included), a job's and a run's from ``job.facets``.
    """
    found: dict[str, Any] = {}
    if not isinstance(payload, Mapping):
        return found
    if node_type in ("job", "run"):
        job = payload.get("job")
        if isinstance(job, Mapping) and job.get("namespace") == namespace and job.get("name") == name:
            _keep(found, job.get("facets"))
        return found
    if node_type != "dataset":
        return found
    for side in ("inputs", "outputs", "dataset"):
        items = payload.get(side)
        items = [items] if isinstance(items, Mapping) else items
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, Mapping) and item.get("namespace") == namespace and item.get("name") == name:
                for key in ("facets", "inputFacets", "outputFacets"):
                    _keep(found, item.get(key))
    return found


def _parsed(value: Any) -> Any:
    """Facets travel as JSON text on the wire (a map of strings): parse what parses, keep the rest."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _keep(found: dict[str, Any], facets: Any) -> None:
    facets = _parsed(facets)
    if not isinstance(facets, Mapping):
        return
    for key, raw in facets.items():
        value = _parsed(raw)
        if key in PANEL_FACETS and value not in (None, {}, [], ""):
            kept = {k: v for k, v in value.items() if not k.startswith("_")} if isinstance(value, Mapping) else value
            found[key] = _redacted(kept)


def _redacted(value: Any) -> Any:
    """Facets name data sources by URI, which may carry ``user:password@``: masked before shown."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
