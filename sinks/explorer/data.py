"""What the explorer's API answers, read from the lineage tables (``nodes``, ``edges``,
``column_edges``, ``alerts``, ``raw_events``) and the named ``prediction`` query.

Each function takes a ``query`` callable (SQL, params -> :class:`QueryResult`, read-only, on one of
the API's connections) and returns plain JSON-able data. Predictions are read from
``inference_lineage_resolved`` for roles that may read everything and from its ``_anon`` view
(no subject reference) for the others, as everywhere else.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from sinks.clickhouse.client import QueryResult
from sinks.clickhouse.queries import FAR_FUTURE, FAR_PAST, get_query
from sinks.explorer.graph import Graph, facets_of, node_type_of

Query = Callable[[str, Mapping[str, Any]], QueryResult]

#: Hard stop for one neighbourhood walk, whatever the node cap (the cap only decides grouping).
WALK_LIMIT = 20_000
_TS = "DateTime64(6, 'UTC')"


def search(query: Query, text: str, limit: int, node_type: str = "") -> list[dict[str, Any]]:
    """Nodes whose id (type, namespace, name, version) contains ``text``, best matches first."""
    sql = f"""
        SELECT node_id, any(node_type) AS node_type, any(namespace) AS namespace, any(name) AS name,
               argMax(version, event_time) AS version, max(event_time) AS last_seen
        FROM (SELECT * FROM nodes
              WHERE positionCaseInsensitive(node_id, {{q:String}}) > 0 AND ({{t:String}} = '' OR node_type = {{t:String}}))
        GROUP BY node_id
        ORDER BY positionCaseInsensitive(name, {{q:String}}) = 1 DESC, length(node_id), node_id
        LIMIT {int(limit)}"""
    return query(sql, {"q": text, "t": node_type}).dicts()


def _hop(query: Query, frontier: list[str], upstream: bool, since: str, until: str, as_of: str) -> list[dict[str, Any]]:
    near, far = ("dst", "src") if upstream else ("src", "dst")
    sql = f"""
        SELECT src, dst, edge_type, argMin(run_id, event_time) AS run_id, min(event_time) AS time,
               argMinIf(src_version, event_time, src_version != '') AS src_version,
               argMinIf(dst_version, event_time, dst_version != '') AS dst_version
        FROM edges
        WHERE {near} IN {{frontier:Array(String)}}
          AND event_time >= {{since:{_TS}}} AND event_time <= {{until:{_TS}}} AND event_time <= {{as_of:{_TS}}}
        GROUP BY src, dst, edge_type"""
    rows = query(sql, {"frontier": frontier, "since": since, "until": until, "as_of": as_of}).dicts()
    for row in rows:
        row["next"] = row[far]
    return rows


def neighbourhood(query: Query, node_id: str, direction: str, depth: int, since: str = FAR_PAST,
                  until: str = FAR_FUTURE, as_of: str = FAR_FUTURE) -> Graph:
    """The nodes within ``depth`` hops of ``node_id`` up and/or downstream, and the edges between them.

    ``since``/``until`` bound the time of every edge followed; ``as_of`` answers as the graph stood
    then (later edges and node versions are ignored). Each node carries its signed depth
    (negative upstream) and its latest version as of ``as_of``.
    """
    node_type_of(node_id)
    graph = Graph(node_id)
    depth_of: dict[str, int] = {node_id: 0}
    seen_edges: set[tuple[str, str, str]] = set()
    for upstream in ((True, False) if direction == "both" else (direction == "upstream",)):
        frontier = [node_id]
        for level in range(1, depth + 1):
            if not frontier:
                break
            rows = _hop(query, frontier, upstream, since, until, as_of)
            nxt: list[str] = []
            for row in rows:
                key = (row["src"], row["dst"], row["edge_type"])
                if key not in seen_edges:
                    seen_edges.add(key)
                    graph.edges.append({k: row[k] for k in ("src", "dst", "edge_type", "run_id", "time",
                                                            "src_version", "dst_version")})
                other = row["next"]
                if other not in depth_of:
                    depth_of[other] = -level if upstream else level
                    nxt.append(other)
            frontier = nxt
            if len(depth_of) >= WALK_LIMIT:
                graph.truncated = True
                break
    ids = list(depth_of)
    sql = f"""
        SELECT node_id, any(node_type) AS node_type, any(namespace) AS namespace, any(name) AS name,
               argMax(version, event_time) AS latest, uniqExactIf(version, version != '') AS versions
        FROM nodes
        WHERE node_id IN {{ids:Array(String)}} AND event_time <= {{as_of:{_TS}}}
        GROUP BY node_id"""
    found = {r["node_id"]: r for r in query(sql, {"ids": ids, "as_of": as_of}).dicts()}
    for r in found.values():
        r["version"] = r.pop("latest")
    for nid in ids:
        row = found.get(nid) or {"node_id": nid, "node_type": nid.partition(":")[0], "namespace": "",
                                 "name": nid.partition(":")[2], "version": "", "versions": 0}
        graph.nodes[nid] = {**row, "depth": depth_of[nid]}
    return graph


def panel(query: Query, node_id: str, as_of: str = FAR_FUTURE) -> dict[str, Any]:
    """A node's side panel: identity, versions over time, facets, runs and the alerts naming it."""
    kind = node_type_of(node_id)
    head = query(f"""
        SELECT node_id, any(node_type) AS node_type, any(namespace) AS namespace, any(name) AS name,
               argMax(version, event_time) AS version, argMax(attributes, event_time) AS attributes,
               min(event_time) AS first_seen, max(event_time) AS last_seen, uniqExact(event_id) AS events
        FROM nodes WHERE node_id = {{id:String}} AND event_time <= {{as_of:{_TS}}} GROUP BY node_id""",
                        {"id": node_id, "as_of": as_of}).dicts()
    if not head:
        return {"node_id": node_id, "node_type": kind, "found": False}
    node = head[0]
    versions = query(f"""
        SELECT version, min(event_time) AS first_seen, max(event_time) AS last_seen, uniqExact(event_id) AS events
        FROM nodes WHERE node_id = {{id:String}} AND version != '' AND event_time <= {{as_of:{_TS}}}
        GROUP BY version ORDER BY first_seen""", {"id": node_id, "as_of": as_of}).dicts()
    runs = query(f"""
        SELECT run_id, groupUniqArray(edge_type) AS edge_types, min(event_time) AS first_seen,
               max(event_time) AS last_seen, any(if(src = {{id:String}}, dst, src)) AS other
        FROM edges
        WHERE (src = {{id:String}} OR dst = {{id:String}}) AND run_id != '' AND event_time <= {{as_of:{_TS}}}
        GROUP BY run_id ORDER BY last_seen DESC LIMIT 50""", {"id": node_id, "as_of": as_of}).dicts()
    facets: dict[str, Any] = {}
    if kind in ("dataset", "job", "run"):
        records = query(f"""
            SELECT record FROM raw_events
            WHERE event_id IN (SELECT event_id FROM nodes WHERE node_id = {{id:String}} AND event_time <= {{as_of:{_TS}}})
            ORDER BY event_time DESC LIMIT 20""", {"id": node_id, "as_of": as_of})
        for (record,) in reversed(records.rows):
            try:
                payload = orjson.loads(record).get("payload")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            facets.update(facets_of(payload, kind, node["namespace"], node["name"]))
    words = [w for w in {node["name"], f"{node['name']}@{node['version']}" if node["version"] else ""} if w]
    alerts = query("""
        SELECT fingerprint, argMax(alert_name, updated_at) AS name, argMax(state, updated_at) AS state,
               argMax(severity, updated_at) AS severity, argMax(summary, updated_at) AS summary,
               argMax(labels, updated_at) AS labels, min(starts_at) AS since, max(updated_at) AS last_change
        FROM (SELECT * FROM alerts
              WHERE hasAny(mapValues(labels), {words:Array(String)})
                 OR arrayExists(w -> positionCaseInsensitive(summary, w) > 0, {words:Array(String)}))
        GROUP BY fingerprint ORDER BY last_change DESC LIMIT 50""", {"words": words}).dicts()
    return {**node, "found": True, "versions": versions, "runs": runs, "facets": facets, "alerts": alerts}


def columns(query: Query, node_id: str) -> dict[str, Any]:
    """Column lineage into and out of one dataset (the ``columnLineage`` facet's edges)."""
    node_type_of(node_id)
    rows = query("""
        SELECT src, src_column, dst, dst_column, transformation_type, subtype, description,
               masking, dataset_wide, run_id, max(event_time) AS time
        FROM column_edges FINAL
        WHERE dst = {id:String} OR src = {id:String}
        GROUP BY src, src_column, dst, dst_column, transformation_type, subtype, description, masking, dataset_wide, run_id
        ORDER BY dst, dst_column, src, src_column LIMIT 5000""", {"id": node_id}).dicts()
    return {"node_id": node_id, "inputs": [r for r in rows if r["dst"] == node_id],
            "outputs": [r for r in rows if r["src"] == node_id and r["dst"] != node_id]}


def prediction(query: Query, prediction_id: str, read_all: bool) -> dict[str, Any]:
    """A prediction: its resolved lineage row, sampling tier and reason, snapshot status and provenance chain."""
    view = "inference_lineage_resolved" if read_all else "inference_lineage_resolved_anon"
    found = query(f"SELECT * FROM {view} WHERE prediction_id = {{p:String}} ORDER BY event_time DESC LIMIT 1",
                         {"p": prediction_id}).dicts()
    spec = get_query("prediction")
    chain = query(spec.sql, spec.bind({"prediction_id": prediction_id})).dicts()
    if not found:
        return {"prediction_id": prediction_id, "found": False, "chain": chain}
    row = found[0]
    if row.get("snapshot_pointer"):
        snapshot = {"status": "sealed", "detail": "an encrypted feature snapshot is held (AES-256-GCM); "
                    "investigators may decrypt it with a reason",
                    "pointer": row["snapshot_pointer"], "sha256": row.get("snapshot_sha256", "")}
    else:
        snapshot = {"status": "none", "detail": "no feature snapshot was kept for this tier", "pointer": "", "sha256": ""}
    return {"prediction_id": prediction_id, "found": True, "row": row, "tier": row.get("tier"),
            "tier_reason": row.get("tier_reason"), "snapshot": snapshot, "chain": chain,
            "node_id": f"prediction:{prediction_id}"}
