"""The explorer's pure logic: node ids and parameters, grouping past the node cap, facets picked from
an event, the demo's deep link, and the route policy covering every explorer route."""
from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from shell.scenario import explorer_link
from sinks import explorer
from sinks.exceptions import QueryError
from sinks.explorer.graph import Graph, facets_of, group, node_type_of, parse_depth, parse_direction


def node(node_id: str, depth: int = 1, namespace: str = "") -> dict[str, Any]:
    kind, _, name = node_id.partition(":")
    return {"node_id": node_id, "node_type": kind, "namespace": namespace, "name": name, "version": "", "depth": depth}


@pytest.mark.parametrize("value", ["", "dataset", "dataset:", "table:x", "x" * 3000, "' OR 1=1 --"])
def test_bad_node_ids_are_refused_in_one_line(value: str) -> None:
    with pytest.raises(QueryError) as info:
        node_type_of(value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_node_types_and_parameters() -> None:
    assert node_type_of("dataset:postgres://db:5432/a.b") == "dataset"
    assert node_type_of("model_version:fraud@1") == "model_version"
    assert parse_direction("upstream") == "upstream"
    assert parse_depth("12", 12) == 12
    for bad in ("0", "13", "x", "-1"):
        with pytest.raises(QueryError):
            parse_depth(bad, 12)
    with pytest.raises(QueryError):
        parse_direction("sideways")


def test_grouping_counts_nodes_by_type_and_namespace_and_keeps_the_focus() -> None:
    nodes = {n["node_id"]: n for n in [node("dataset:a/src", 0, "a")]}
    for i in range(5):
        nodes[f"run:r{i}"] = node(f"run:r{i}", 1, "etl")
        nodes[f"dataset:b/t{i}"] = node(f"dataset:b/t{i}", 2, "b")
    edges = [{"src": "dataset:a/src", "dst": f"run:r{i}", "edge_type": "read_by"} for i in range(5)]
    edges += [{"src": f"run:r{i}", "dst": f"dataset:b/t{i}", "edge_type": "produced"} for i in range(5)]
    edges.append({"src": "dataset:b/t0", "dst": "dataset:b/t1", "edge_type": "copied"})
    out = group("dataset:a/src", nodes, edges)
    by_id = {n["node_id"]: n for n in out["nodes"]}
    assert by_id["dataset:a/src"].get("group") is None
    assert by_id["group:run|etl"]["count"] == 5 and by_id["group:dataset|b"]["count"] == 5
    assert by_id["group:dataset|b"]["internal_edges"] == 1
    merged = {(e["src"], e["dst"]): e["count"] for e in out["edges"]}
    assert merged == {("dataset:a/src", "group:run|etl"): 5, ("group:run|etl", "group:dataset|b"): 5}


def test_the_cap_decides_between_nodes_and_groups() -> None:
    g = Graph("model:m", {f"run:r{i}": node(f"run:r{i}") for i in range(11)}, [])
    g.nodes["model:m"] = node("model:m", 0)
    small, big = g.to_json(cap=100), g.to_json(cap=10)
    assert not small["grouped"] and len(small["nodes"]) == 12
    assert big["grouped"] and big["total_nodes"] == 12 and len(big["nodes"]) == 2


def test_facets_come_from_the_matching_dataset_or_job_only() -> None:
    payload = {
        "job": {"namespace": "etl", "name": "j", "facets": {"sql": json.dumps({"query": "SELECT 1"}), "other": "{}"}},
        "inputs": [{"namespace": "pg", "name": "a", "facets": {"schema": json.dumps({"fields": [{"name": "id"}]})}}],
        "outputs": [{"namespace": "pg", "name": "b", "facets": {"schema": json.dumps({"fields": [{"name": "x"}]}),
                                                               "tags": "not json"}}],
    }
    assert facets_of(payload, "dataset", "pg", "a") == {"schema": {"fields": [{"name": "id"}]}}
    assert facets_of(payload, "dataset", "pg", "b") == {"schema": {"fields": [{"name": "x"}]}, "tags": "not json"}
    assert facets_of(payload, "job", "etl", "j") == {"sql": {"query": "SELECT 1"}}
    assert facets_of(payload, "job", "etl", "other") == {} and facets_of(None, "dataset", "pg", "a") == {}


def test_credentials_in_facet_uris_are_masked() -> None:
    payload = {"inputs": [{"namespace": "pg", "name": "a", "facets": {
        "datasource": json.dumps({"name": "crm", "uri": "postgres://etl:hunter2@crm:5432/crm"}),
        "sql": json.dumps({"query": "SELECT * FROM dblink('postgres://admin:s3cret@db/x', 'q')"})}}]}
    shown = json.dumps(facets_of(payload, "dataset", "pg", "a"))
    assert "hunter2" not in shown and "s3cret" not in shown and "crm:5432" in shown


def test_the_demo_link_is_a_deep_link_without_a_secret() -> None:
    link = explorer_link("http://127.0.0.1:8088/", "pred-12ab")
    assert link == "http://127.0.0.1:8088/explore?node=prediction:pred-12ab"
    assert "lk_" not in link and "token" not in link and "key" not in link


def test_every_explorer_route_has_a_rule() -> None:
    app = web.Application()
    explorer.add_routes(app)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert paths == set(explorer.ROUTE_POLICY)
    assert all(need is not explorer.PUBLIC for path, need in explorer.ROUTE_POLICY.items() if path.startswith("/api/"))
    csp = explorer.PAGE_HEADERS["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "connect-src 'self'" in csp and "http" not in csp
