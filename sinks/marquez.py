"""Marquez-compatible lineage graph shape (pure logic, no I/O).

Marquez answers ``GET /api/v1/lineage?nodeId=...`` with ``{"graph": [node, ...]}`` where each
node is ``{"id", "type", "data", "inEdges", "outEdges"}`` and an edge is
``{"origin": ID, "destination": ID}``. Node ids are ``dataset:NAMESPACE:NAME`` and
``job:NAMESPACE:NAME``; types are ``DATASET`` and ``JOB``.

This module parses a node id and turns a list of edges between (kind, namespace, name) nodes
into that document. Serving it over HTTP is not wired yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = {"dataset": "DATASET", "job": "JOB"}


class NodeIdError(ValueError):
    """A nodeId that is not ``dataset:NS:NAME`` or ``job:NS:NAME``."""


@dataclass(frozen=True, order=True)
class NodeRef:
    kind: str  # "dataset" or "job"
    namespace: str
    name: str

    @property
    def marquez_id(self) -> str:
        return f"{self.kind}:{self.namespace}:{self.name}"


def parse_node_id(node_id: str) -> NodeRef:
    """Split a Marquez node id. The name is what follows the last ':' so namespaces such as
    ``postgres://host:5432`` keep their colons; a name holding ':' cannot be told apart."""
    kind, sep, rest = node_id.partition(":")
    if not sep or kind not in KINDS:
        raise NodeIdError(f"nodeId must start with 'dataset:' or 'job:', got {node_id[:80]!r}")
    namespace, sep, name = rest.rpartition(":")
    if not sep or not namespace or not name:
        raise NodeIdError(f"nodeId must be KIND:NAMESPACE:NAME, got {node_id[:80]!r}")
    return NodeRef(kind, namespace, name)


def lineage_graph(
    start: NodeRef,
    edges: Iterable[tuple[NodeRef, NodeRef]],
    data: Mapping[NodeRef, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build ``{"graph": [...]}`` from (origin, destination) edges; the start node is always
    present, nodes are listed in id order and edges in (origin, destination) order."""
    data = data or {}
    ins: dict[NodeRef, set[tuple[str, str]]] = {start: set()}
    outs: dict[NodeRef, set[tuple[str, str]]] = {start: set()}
    for origin, dest in edges:
        pair = (origin.marquez_id, dest.marquez_id)
        for node in (origin, dest):
            ins.setdefault(node, set())
            outs.setdefault(node, set())
        outs[origin].add(pair)
        ins[dest].add(pair)
    graph = []
    for node in sorted(ins, key=lambda n: n.marquez_id):
        base: dict[str, Any] = {"namespace": node.namespace, "name": node.name}
        base.update(data.get(node, {}))
        graph.append({
            "id": node.marquez_id,
            "type": KINDS[node.kind],
            "data": base,
            "inEdges": [{"origin": o, "destination": d} for o, d in sorted(ins[node])],
            "outEdges": [{"origin": o, "destination": d} for o, d in sorted(outs[node])],
        })
    return {"graph": graph}
