"""The SRE dashboard, its data feed and `/metrics`, mounted on the sink's API server.

``add_routes(app, ctx)`` (listed in ``sinks.api_server.ROUTE_PROVIDERS``) also starts the
queue-depth :class:`~stream_apps.monitor.service.Monitor` with the server, so lag is measured
and alerted on while stream workers are paused or down.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from sinks.api_server import METRICS_PROVIDERS, PROM_TYPE
from stream_apps.dashboard.data import alerts_json, dashboard_data, metrics_text
from stream_apps.monitor.service import Monitor

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MONITOR_KEY = web.AppKey("lineage_monitor", Monitor)


def _monitor(request: web.Request) -> Monitor:
    return request.app[MONITOR_KEY]


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def data(request: web.Request) -> web.Response:
    window = float(request.query.get("window", "900"))
    return web.json_response(await dashboard_data(_monitor(request), window))


async def alerts(request: web.Request) -> web.Response:
    return web.json_response(await alerts_json(_monitor(request), int(request.query.get("limit", "200"))))


async def metrics(request: web.Request) -> web.Response:
    body = await metrics_text(_monitor(request))
    return web.Response(body=body, headers={"Content-Type": PROM_TYPE})


def _has_get(app: web.Application, path: str) -> bool:
    for resource in app.router.resources():
        if resource.canonical == path and any(r.method == "GET" for r in resource):
            return True
    return False


def add_routes(app: web.Application, ctx: Any) -> None:
    mon = Monitor(ctx.settings)
    app[MONITOR_KEY] = mon

    async def start(_: web.Application) -> None:
        mon.start()

    async def stop(_: web.Application) -> None:
        await mon.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/", page)
    app.router.add_static("/dashboard/static", STATIC)
    app.router.add_get("/api/dashboard/data", data)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_get("/metrics/pipeline", metrics)
    if not _has_get(app, "/metrics"):
        app.router.add_get("/metrics", metrics)
    # The sink's own /metrics appends ours: it calls each provider and concatenates.
    if METRICS_PROVIDERS in app:
        app[METRICS_PROVIDERS].append(lambda: metrics_text(mon))
