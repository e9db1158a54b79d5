"""The SRE dashboard and its data feed, served from the figures of a running queue-depth monitor.

The monitor (:class:`~stream_apps.monitor.service.Monitor`) runs in the sink service whether or
not the HTTP API does; these routes only read it.
"""
from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from lineage.keyspace import KeySpace
from lineage.metric_records import PROM_TYPE
from stream_apps.dashboard.data import alerts_json, dashboard_data, metrics_text
from stream_apps.monitor.service import Monitor

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MONITOR_KEY = web.AppKey("lineage_monitor", Monitor)


def _monitor(request: web.Request) -> Monitor:
    return request.app[MONITOR_KEY]


#: The page loads only its own script and stylesheet, talks only to this API, cannot be framed
#: (its sign-in form) and its form cannot post anywhere by itself (the script sends the key).
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def data(request: web.Request) -> web.Response:
    window = float(request.query.get("window", "900"))
    return web.json_response(await dashboard_data(_monitor(request), window))


async def alerts(request: web.Request) -> web.Response:
    return web.json_response(await alerts_json(_monitor(request), int(request.query.get("limit", "200"))))


async def stats(request: web.Request) -> web.Response:
    """Counters of the deployment's workers: accepted per class, dead-lettered per reason, tiers."""
    mon = _monitor(request)
    raw = await mon.redis.hgetall(KeySpace.of(mon.settings).stats(mon.settings.app_id))
    return web.json_response({(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()})


async def metrics(request: web.Request) -> web.Response:
    body = await metrics_text(_monitor(request))
    return web.Response(body=body, headers={"Content-Type": PROM_TYPE})


def add_routes(app: web.Application, monitor: Monitor) -> None:
    """Add the dashboard, its data feed, the alert list, the workers' counters and ``/metrics/pipeline``.

    The monitor is built, started and stopped by the process that owns it, whether or not it
    serves these pages.
    """
    app[MONITOR_KEY] = monitor
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/", page)
    app.router.add_static("/dashboard/static", STATIC)
    app.router.add_get("/api/dashboard/data", data)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_get("/api/pipeline/stats", stats)
    app.router.add_get("/metrics/pipeline", metrics)
