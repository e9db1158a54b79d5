"""The explorer's JSON API on the hand-checked June 2024 scenario (written by the real sink into
embedded chDB), behind the real guard (keys in Redis) with the real audit trail (Kafka).

Every data route refuses a request without a key (401) and an emitter key (403); analysts get
anonymised prediction rows (no subject reference), auditors must give a reason and get the full row;
bad parameters get one-line 400s; past the node cap a neighbourhood comes grouped with counts.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from helpers import auth_headers
from integration.lineage_scenario import RUN, scenario_store
from integration.sink_support import api_client, deployment
from lineage.settings import Settings
from sinks import explorer
from sinks.clickhouse.client import Store

pytestmark = [pytest.mark.integration]

API = explorer.API
ROUTES = ["/config", "/search?q=fraud", "/graph?node=model:fraud", "/node?node=model:fraud",
          "/columns?node=dataset:warehouse://dw/dw.customers", "/prediction?id=p1"]


@pytest.fixture(scope="module")
def settings(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return deployment(stack, tmp_path_factory.mktemp("explorer-api"))


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[Store]:
    with scenario_store(settings.data_dir / "clickhouse") as store:
        yield store


def client(settings: Settings, store: Store) -> Any:
    return api_client(settings, store, mounts=[explorer.add_routes], policy=explorer.ROUTE_POLICY)


async def get(http: TestClient, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.get(path, headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_data_route_needs_a_key_with_the_query_right(settings: Settings, store: Store) -> None:
    async def go() -> None:
        async with client(settings, store) as http:
            for path in ROUTES:
                status, body = await get(http, API + path)
                assert status == 401, path
                assert "rows" not in str(body) and "fraud" not in str(body)
                status, _ = await get(http, API + path, {"Authorization": "Bearer lk_not_a_key"})
                assert status == 401, path
                status, body = await get(http, API + path, auth_headers(settings, "emitter"))
                assert status == 403 and "emitter" in body["error"], path
            # the page itself holds no data: public, with the dashboard's strict policy
            async with http.get("/explore") as resp:
                assert resp.status == (200 if explorer.BUNDLE.exists() else 503)
                if resp.status == 200:
                    csp = resp.headers["Content-Security-Policy"]
                    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
                    assert "/explore/static/explorer.bundle.js" in await resp.text()
    run(go())


def test_search_graph_panel_and_prediction_for_an_analyst(settings: Settings, store: Store) -> None:
    analyst = auth_headers(settings, "analyst")

    async def go() -> None:
        async with client(settings, store) as http:
            status, body = await get(http, API + "/config", analyst)
            assert status == 200 and body["role"] == "analyst" and body["anonymised"] and not body["may_decrypt"]
            status, body = await get(http, API + "/search?q=fraud", analyst)
            ids = [r["node_id"] for r in body["results"]]
            assert status == 200 and "model:fraud" in ids and "model_version:fraud@1" in ids
            status, body = await get(http, API + "/search?q=customers&type=dataset", analyst)
            assert {r["node_id"] for r in body["results"]} == {"dataset:postgres://crm:5432/crm.public.customers",
                                                               "dataset:warehouse://dw/dw.customers"}

            status, g = await get(http, API + "/graph?node=model:fraud&direction=upstream&depth=6", analyst)
            assert status == 200 and not g["grouped"]
            nodes = {n["node_id"]: n for n in g["nodes"]}
            assert nodes["model:fraud"]["depth"] == 0 and nodes["model_version:fraud@1"]["depth"] == -1
            assert nodes["run:" + RUN["T1"]]["depth"] == -2 and nodes["feature_set:customer_fs@1"]["depth"] == -3
            assert "dataset:warehouse://dw/dw.customers" in nodes and "dataset:postgres://crm:5432/crm.public.customers" in nodes
            edge = next(e for e in g["edges"] if e["src"] == "run:" + RUN["T1"] and e["dst"] == "model_version:fraud@1")
            assert edge["edge_type"] == "produced" and edge["run_id"] == RUN["T1"] and edge["time"].startswith("2024-06-12")
            # as of June 15: the second training run did not exist yet
            _, early = await get(http, API + "/graph?node=model:fraud&direction=upstream&depth=6&as_of=2024-06-15", analyst)
            early_ids = {n["node_id"] for n in early["nodes"]}
            assert "model_version:fraud@1" in early_ids and "model_version:fraud@2" not in early_ids
            # downstream of the warehouse table within June 16-20 only: E2's writes and what read it then
            _, down = await get(http, API + "/graph?node=dataset:warehouse://dw/dw.customers&direction=downstream"
                                           "&depth=1&since=2024-06-16&until=2024-06-20", analyst)
            assert {e["dst"] for e in down["edges"]} == {"run:" + RUN["F2"], "run:" + RUN["T2"]}

            status, panel = await get(http, API + "/node?node=dataset:warehouse://dw/dw.customers", analyst)
            assert status == 200 and panel["found"] and panel["node_type"] == "dataset"
            assert [v["version"] for v in panel["versions"]] == ["w1", "w2", "w3"]
            assert {RUN["E1"], RUN["E2"], RUN["E3"], RUN["F1"], RUN["T1"]} <= {r["run_id"] for r in panel["runs"]}

            status, pred = await get(http, API + "/prediction?id=p1", analyst)
            assert status == 200 and pred["found"] and pred["tier"] == "full" and pred["tier_reason"] == "regulated"
            assert "subject_ref" not in pred["row"] and "subj-" not in str(pred)
            assert pred["snapshot"]["status"] == "sealed" and pred["snapshot"]["pointer"] == "enc://snap/p1"
            chain = {(c["node_id"], c["downstream_node"]) for c in pred["chain"]}
            assert ("model_version:fraud@1", "prediction:p1") in chain
            assert ("run:" + RUN["T1"], "model_version:fraud@1") in chain
    run(go())


def test_auditors_state_a_reason_and_see_the_subject_reference(settings: Settings, store: Store) -> None:
    async def go() -> None:
        async with client(settings, store) as http:
            status, body = await get(http, API + "/prediction?id=p1", auth_headers(settings, "auditor"))
            assert status == 400 and "reason is required" in body["error"] and "\n" not in body["error"]
            status, pred = await get(http, API + "/prediction?id=p1", auth_headers(settings, "auditor", "case 17"))
            assert status == 200 and pred["row"]["subject_ref"] == "subj-20"
            status, cfg = await get(http, API + "/config", auth_headers(settings, "investigator"))
            assert cfg["may_decrypt"] and cfg["reason_required"] and not cfg["anonymised"]
    run(go())


def test_bad_parameters_get_one_line_errors(settings: Settings, store: Store) -> None:
    analyst = auth_headers(settings, "analyst")
    bad = ["/graph?node=nonsense", "/graph?node=model:fraud&depth=99", "/graph?node=model:fraud&depth=x",
           "/graph?node=model:fraud&direction=sideways", "/graph?node=model:fraud&as_of=yesterday-ish",
           "/search?q=", "/search?q=a&type=table", "/node?node=' OR 1=1 --", "/prediction?id=",
           "/columns?node=dataset"]

    async def go() -> None:
        async with client(settings, store) as http:
            for path in bad:
                status, body = await get(http, API + path, analyst)
                assert status == 400, path
                assert body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"], path
            # quotes and SQL in a search are data, not SQL
            status, body = await get(http, API + "/search?q=" + "x'%20OR%20'1'='1", analyst)
            assert status == 200 and body["results"] == []
    run(go())


def test_past_the_node_cap_the_graph_is_grouped_with_counts(settings: Settings, store: Store) -> None:
    from lineage.settings import ExplorerSettings

    capped = settings.model_copy(update={"explorer": ExplorerSettings(node_cap=10)})

    async def go() -> None:
        async with client(capped, store) as http:
            path = API + "/graph?node=dataset:warehouse://dw/dw.customers&depth=8"
            status, g = await get(http, path, auth_headers(settings, "analyst"))
            assert status == 200 and g["grouped"] and g["cap"] == 10 and g["total_nodes"] > 10
            groups = {n["node_id"]: n for n in g["nodes"] if n.get("group")}
            assert sum(n["count"] for n in groups.values()) == g["total_nodes"] - 1
            assert groups["group:prediction|scoring-api"]["count"] == 4  # p1-p4 (p5's version has no training)
            assert any(n["node_id"] == "dataset:warehouse://dw/dw.customers" and not n.get("group") for n in g["nodes"])
            assert g["edges"] and all(e["count"] >= 1 for e in g["edges"])
        async with client(settings, store) as http:  # the default cap: the same neighbourhood node by node
            status, g = await get(http, path, auth_headers(settings, "analyst"))
            assert status == 200 and not g["grouped"] and len(g["nodes"]) == g["total_nodes"]
            # a caller may lower the cap for one view, never raise it past the setting
            status, g = await get(http, path + "&cap=10", auth_headers(settings, "analyst"))
            assert status == 200 and g["grouped"] and g["cap"] == 10
            for bad in ("5", "999999", "x"):
                status, body = await get(http, path + "&cap=" + bad, auth_headers(settings, "analyst"))
                assert status == 400 and body["error"].startswith("cap "), bad
    run(go())
