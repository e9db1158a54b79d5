"""The lineage explorer: the page at ``/explore`` and its JSON API under ``/api/v1/explore/``.

The page and its assets hold no data (public, like the dashboard's); it signs in with a key
through the session routes and every data route needs a key with the ``query`` right. Each data
request is recorded in the query audit log like a named query (``explore.<what>``), and roles in
``api.reason_required`` must state a reason (``X-Lineage-Reason``). Analysts see anonymised
prediction rows (no subject reference). Snapshots are decrypted through the existing audited
route ``POST /api/snapshots/{pointer}:decrypt`` (investigators, with a reason).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from sinks.access.audit import QUERY, audited_query
from sinks.access.http import PUBLIC, Need, actor_of, reason_of
from sinks.access.roles import Action, allows
from sinks.api_server import CTX, ApiContext, answer_off_loop, dumps, error_response, require_reason
from sinks.clickhouse.client import QueryResult
from sinks.clickhouse.queries import FAR_FUTURE, FAR_PAST, READONLY_SETTINGS, parse_time
from sinks.exceptions import QueryError
from sinks.explorer import data
from sinks.explorer.graph import NODE_TYPES, parse_bounded, parse_depth, parse_direction
from sinks.reports.http import REPORTS_PATH

STATIC = Path(__file__).with_name("static")
BUNDLE = STATIC / "explorer.bundle.js"
PAGE_PATH = "/explore"
API = "/api/v1/explore"
#: Where reports are downloaded from (``<this><kind>?...``, served by the reports route).
REPORTS_BASE = REPORTS_PATH.format(kind="")

#: Same policy as the dashboard: only its own script and stylesheet, only this API, never framed.
#: cytoscape sets element styles from script, hence ``style-src 'unsafe-inline'`` for attributes
#: only; scripts stay ``'self'``.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

#: What each explorer route needs (merged into the sink's route policy by its composition root).
ROUTE_POLICY: dict[str, Need] = {
    PAGE_PATH: PUBLIC,  # the page and its assets hold no data; it signs in with a key
    f"{PAGE_PATH}/static": PUBLIC,
    f"{API}/config": Action.QUERY,
    f"{API}/search": Action.QUERY,
    f"{API}/graph": Action.QUERY,
    f"{API}/node": Action.QUERY,
    f"{API}/columns": Action.QUERY,
    f"{API}/prediction": Action.QUERY,
}




def _json(body: Any) -> web.Response:
    return web.Response(body=dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})


async def page(request: web.Request) -> web.StreamResponse:
    if not BUNDLE.exists():
        return web.Response(status=503, text="the explorer's script is not built: run `make install` "
                                             "(npm ci && npm run build in sinks/explorer/web)")
    return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def _audited(request: web.Request, what: str, params: dict[str, str],
                   build: Callable[[data.Query], Any], rows: Callable[[Any], int]) -> web.Response:
    """Run ``build`` on a worker thread as one audited query ``explore.<what>``; answer JSON or one line."""
    ctx: ApiContext = request.app[CTX]
    actor = actor_of(request)
    reason = reason_of(request)
    out: list[Any] = []

    def run() -> QueryResult:
        require_reason(ctx, actor, reason)
        answer = build(lambda sql, p: ctx.query(sql, p, READONLY_SETTINGS))
        out.append(answer)
        return QueryResult(["rows"], ["UInt64"], [(0,)] * rows(answer))

    return await answer_off_loop(partial(audited_query, ctx.audit, actor, QUERY, f"explore.{what}", params, reason, run),
                                 lambda _: _json(out[0]))


def _time(request: web.Request, name: str, default: str) -> str:
    value = request.query.get(name, "").strip()
    return parse_time(value) if value else default


async def config(request: web.Request) -> web.Response:
    """Who is signed in and what the page may offer them (no data from the store)."""
    ctx: ApiContext = request.app[CTX]
    actor = actor_of(request)
    s = ctx.settings.explorer
    return _json({"name": actor.name, "role": actor.role.value, "node_cap": s.node_cap, "max_depth": s.max_depth,
                  "node_types": NODE_TYPES, "reason_required": actor.role.value in ctx.settings.api.reason_required,
                  "may_decrypt": allows(actor.role, Action.DECRYPT), "may_report": allows(actor.role, Action.REPORTS),
                  "anonymised": not allows(actor.role, Action.READ_ALL), "reports_path": REPORTS_BASE})


async def search(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    text = request.query.get("q", "").strip()
    kind = request.query.get("type", "").strip()
    if not 1 <= len(text) <= 200:
        return error_response(400, "q must be 1..200 characters")
    if kind and kind not in NODE_TYPES:
        return error_response(400, f"type must be one of {', '.join(NODE_TYPES)}")
    limit = ctx.settings.explorer.search_limit
    return await _audited(request, "search", {"q": text, "type": kind},
                          lambda q: {"results": data.search(q, text, limit, kind)}, lambda a: len(a["results"]))


async def graph(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    s = ctx.settings.explorer
    q = request.query
    try:
        node = q.get("node", "")
        direction = parse_direction(q.get("direction", "both"))
        depth = parse_depth(q.get("depth", "3"), s.max_depth)
        since, until = _time(request, "since", FAR_PAST), _time(request, "until", FAR_FUTURE)
        as_of = _time(request, "as_of", FAR_FUTURE)
        cap = parse_bounded(q["cap"], 10, s.node_cap, "cap") if "cap" in q else s.node_cap
    except QueryError as exc:
        return error_response(400, str(exc))
    params = {"node": node, "direction": direction, "depth": str(depth), "since": since, "until": until, "as_of": as_of}
    return await _audited(request, "graph", params,
                          lambda qr: data.neighbourhood(qr, node, direction, depth, since, until, as_of).to_json(cap),
                          lambda a: int(a["total_nodes"]))


async def node(request: web.Request) -> web.Response:
    node_id = request.query.get("node", "")
    try:
        as_of = _time(request, "as_of", FAR_FUTURE)
    except QueryError as exc:
        return error_response(400, str(exc))
    return await _audited(request, "node", {"node": node_id, "as_of": as_of},
                          lambda q: data.panel(q, node_id, as_of), lambda a: 1 if a.get("found") else 0)


async def columns(request: web.Request) -> web.Response:
    node_id = request.query.get("node", "")
    return await _audited(request, "columns", {"node": node_id}, lambda q: data.columns(q, node_id),
                          lambda a: len(a["inputs"]) + len(a["outputs"]))


async def prediction(request: web.Request) -> web.Response:
    actor = actor_of(request)
    pid = request.query.get("id", "").strip()
    if not 1 <= len(pid) <= 512:
        return error_response(400, "id must be a prediction id (1..512 characters)")
    read_all = allows(actor.role, Action.READ_ALL)
    return await _audited(request, "prediction", {"id": pid},
                          lambda q: data.prediction(q, pid, read_all), lambda a: len(a["chain"]) + int(a["found"]))


def add_routes(app: web.Application) -> None:
    """Add the page, its assets and the explorer's data routes (policy: :data:`ROUTE_POLICY`)."""
    app.router.add_get(PAGE_PATH, page)
    app.router.add_static(f"{PAGE_PATH}/static", STATIC)
    app.router.add_get(f"{API}/config", config)
    app.router.add_get(f"{API}/search", search)
    app.router.add_get(f"{API}/graph", graph)
    app.router.add_get(f"{API}/node", node)
    app.router.add_get(f"{API}/columns", columns)
    app.router.add_get(f"{API}/prediction", prediction)
