"""HTTP API served by the sink process (the one owner of an embedded chDB store).

``GET /health``, ``GET /metrics``, ``POST /api/sql`` (through the SQL sandbox), ``GET /api/query/<name>?...``.
The process's composition root (the shell's sink service) passes in what else is served: route
mounts (functions that add routes to the app) and metrics providers (coroutine functions whose
Prometheus exposition ``/metrics`` appends to the sink's own counters).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from aiohttp import web
from clickhouse_connect.driver.exceptions import ClickHouseError

from lineage.metric_records import PROM_TYPE
from sinks.clickhouse.client import QueryResult, Store, error_line
from sinks.clickhouse.metrics import SinkMetrics
from sinks.clickhouse.queries import READONLY_SETTINGS, get_query
from sinks.clickhouse.sandbox import DEFAULT_ROLE, SqlSandbox
from sinks.exceptions import QueryError

if TYPE_CHECKING:
    from lineage.settings import Settings

log = logging.getLogger(__name__)

#: Adds routes (and their startup/cleanup hooks) to the app.
RouteMount = Callable[[web.Application], None]
#: An async callable returning a Prometheus text exposition (families not named ``lineage_sink_*``).
MetricsProvider = Callable[[], Awaitable[bytes]]


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def result_json(res: QueryResult) -> dict[str, Any]:
    return {"columns": res.columns, "types": res.types, "rows": res.rows}


@dataclass
class ApiContext:
    """What the handlers need: settings, the store, the sink's counters, and thread-safe query functions."""

    settings: Settings
    store: Store
    metrics: SinkMetrics = field(default_factory=SinkMetrics)
    sandbox: SqlSandbox = field(init=False)

    def __post_init__(self) -> None:
        self.sandbox = SqlSandbox(self.store, self.settings.sql)

    def query(self, sql: str, params: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None) -> QueryResult:
        """Run SQL (serialized with the sink's inserts). Call from a worker thread, or use `aquery`."""
        return self.store.query(sql, params, settings)

    async def aquery(self, sql: str, params: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None) -> QueryResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(self.store.query, sql, params, settings))


CTX: web.AppKey[ApiContext] = web.AppKey("lineage_api_ctx", ApiContext)
METRICS_PROVIDERS: web.AppKey[tuple[MetricsProvider, ...]] = web.AppKey("lineage_metrics_providers", tuple)


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=dumps({"error": message}), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    body = {
        "status": "ok",
        "service": "lineage-sink",
        "dsn": ctx.store.dsn,
        "database": ctx.store.database,
        "embedded": ctx.store.embedded,
        "sink": ctx.metrics.snapshot(),
    }
    return web.Response(body=dumps(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    parts = [ctx.metrics.prometheus().encode()]
    failed = 0
    for provider in request.app[METRICS_PROVIDERS]:
        try:
            parts.append(await provider())
        except Exception:  # noqa: BLE001 - the sink's own counters still go out; the failure is logged and exposed
            failed += 1
            log.exception("metrics provider %r failed", provider)
    parts.append(b"# TYPE lineage_sink_metrics_provider_failures gauge\n"
                 b"lineage_sink_metrics_provider_failures %d\n" % failed)
    return web.Response(body=b"".join(parts), headers={"Content-Type": PROM_TYPE})


async def sql(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    try:
        if request.content_type == "application/json":
            body = await request.json()
            text, params = str(body.get("sql", "")), dict(body.get("params") or {})
        else:
            text, params = await request.text(), dict(request.query)
        loop = asyncio.get_running_loop()
        # the role will come from the caller's key once keys exist; until then, auditor
        res = await loop.run_in_executor(None, partial(ctx.sandbox.run, text, DEFAULT_ROLE, params))
    except QueryError as exc:
        return _error(400, str(exc))
    except ValueError:
        return _error(400, "body must be JSON {\"sql\": ..., \"params\": {...}} or plain SQL text")
    except ClickHouseError as exc:
        return _error(400, error_line(exc))
    return web.Response(body=dumps(result_json(res)), content_type="application/json")


async def named_query(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    try:
        spec = get_query(request.match_info["name"])
        params = spec.bind(dict(request.query))
        res = await ctx.aquery(spec.sql, params, READONLY_SETTINGS)
    except QueryError as exc:
        return _error(400, str(exc))
    except ClickHouseError as exc:
        return _error(400, error_line(exc))
    return web.Response(body=dumps(result_json(res)), content_type="application/json")


def build_app(
    ctx: ApiContext, mounts: Sequence[RouteMount] = (), metrics_providers: Sequence[MetricsProvider] = ()
) -> web.Application:
    """The sink's routes, then each of ``mounts``; ``/metrics`` also serves ``metrics_providers``."""
    app = web.Application(client_max_size=16 << 20)
    app[CTX] = ctx
    app[METRICS_PROVIDERS] = tuple(metrics_providers)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/sql", sql)
    app.router.add_get("/api/query/{name}", named_query)
    for mount in mounts:
        mount(app)
    return app
