"""HTTP API served by the sink process (the one owner of an embedded chDB store).

``GET /health`` (public, minimal), ``GET /metrics``, ``POST /api/sql`` (through the SQL sandbox),
``GET /api/query/<name>?...`` and the session routes; every route but ``/health`` (and the
dashboard's page and assets) needs a key, see :mod:`sinks.access.http`. Queries are audited.
The process's composition root (the shell's sink service) passes in what else is served: route
mounts (functions that add routes to the app) and metrics providers (coroutine functions whose
Prometheus exposition ``/metrics`` appends to the sink's own counters).
"""
from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import orjson
from aiohttp import web
from clickhouse_connect.driver.exceptions import ClickHouseError

from lineage.metric_records import PROM_TYPE
from lineage.pii.exceptions import (
    IntegrityError,
    KeyholderUnavailable,
    PiiError,
    PointerError,
    ReasonRequired,
    SubjectErased,
)
from lineage.pii.holder import KeyholderClient, SnapshotOpener
from sinks import marquez
from sinks.access.audit import DECRYPT, QUERY, SQL, AuditTrail, audited_query
from sinks.access.http import (
    ANY_KEY,
    PUBLIC,
    REASON_HEADER,
    Guard,
    Need,
    actor_of,
    forbidden,
    reason_of,
    require,
    rule_for,
)
from sinks.access.roles import Action, Actor, Role, allows
from sinks.clickhouse.client import QueryResult, Store, error_line, store_id
from sinks.clickhouse.metrics import SinkMetrics
from sinks.clickhouse.queries import READONLY_SETTINGS, get_query
from sinks.clickhouse.sandbox import SqlSandbox
from sinks.exceptions import AuditError, QueryError, QueryRefused
from sinks.pii.operations import get_snapshot

if TYPE_CHECKING:
    from lineage.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

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


#: Named queries that need more than ``Action.QUERY``.
QUERY_NEEDS: dict[str, Action] = {"audit_log": Action.AUDIT_LOG, "verify": Action.READ_ALL, "verify_hashes": Action.READ_ALL}


def sandbox_role(role: Role) -> str:
    """The SQL sandbox's table set for a key's role: everything with READ_ALL, else anonymised lineage."""
    return "auditor" if allows(role, Action.READ_ALL) else "analyst"


@dataclass
class ApiContext:
    """What the handlers need: settings, the store, the sink's counters, the audit log and the sandbox.

    Queries from the API run on connections of their own (``settings.sql.concurrency`` of them),
    so a long statement never holds the sink's insert path, nor every other caller. Snapshots are
    decrypted by ``keyholder`` (by default the key holder's socket under ``<data_dir>/run/``): the
    sink holds no key.
    """

    settings: Settings
    store: Store
    audit: AuditTrail
    metrics: SinkMetrics = field(default_factory=SinkMetrics)
    keyholder: SnapshotOpener | None = None
    readers: queue.Queue[Store] = field(init=False)

    def __post_init__(self) -> None:
        self.readers = queue.Queue()
        for _ in range(self.settings.sql.concurrency):
            self.readers.put(self.store.sibling())

    @contextmanager
    def reader(self) -> Iterator[Store]:
        """A connection of the API's own for one statement (waits while all are busy)."""
        store = self.readers.get()
        try:
            yield store
        finally:
            self.readers.put(store)

    def query(self, sql: str, params: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None) -> QueryResult:
        """Run SQL on one of the API's connections (blocking: call from a worker thread)."""
        with self.reader() as store:
            return store.query(sql, params, settings)

    def sandboxed(self, sql: str, role: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Judge and run analyst SQL as ``role`` on one of the API's connections."""
        with self.reader() as store:
            return SqlSandbox(store, self.settings.sql).run(sql, role, params)


CTX: web.AppKey[ApiContext] = web.AppKey("lineage_api_ctx", ApiContext)
METRICS_PROVIDERS: web.AppKey[tuple[MetricsProvider, ...]] = web.AppKey("lineage_metrics_providers", tuple)


def error_response(status: int, message: str) -> web.Response:
    """``{"error": message}``: one line, never cached."""
    return web.Response(status=status, body=dumps({"error": message}), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def require_reason(ctx: ApiContext, actor: Actor, reason: str) -> None:
    """Roles in ``api.reason_required`` give a reason: without one, :class:`QueryRefused` (raised
    inside an audited attempt, so the refusal is recorded like any other)."""
    if not reason and actor.role.value in ctx.settings.api.reason_required:
        raise QueryRefused(f"a reason is required for the {actor.role.value} role ({REASON_HEADER} header)")


async def answer_off_loop(run: Callable[[], T], answer: Callable[[T], web.Response],
                          not_found: tuple[type[Exception], ...] = (),
                          unavailable: tuple[type[Exception], ...] = ()) -> web.Response:
    """Run ``run`` (blocking: a query) on a worker thread and answer with ``answer(result)``; a bad
    question is a one-line 400, ``not_found`` a 404, ``unavailable`` (and an audit log that cannot
    record) a 503."""
    try:
        result = await asyncio.get_running_loop().run_in_executor(None, run)
    except not_found as exc:
        return error_response(404, str(exc))
    except unavailable as exc:
        return error_response(503, str(exc))
    except QueryError as exc:
        return error_response(400, str(exc).splitlines()[0] if str(exc) else "bad request")
    except ClickHouseError as exc:
        return error_response(400, error_line(exc))
    except AuditError as exc:
        return error_response(503, str(exc))
    return answer(result)


async def health(request: web.Request) -> web.Response:
    """Minimal and public: alive, and which store (by id only)."""
    ctx: ApiContext = request.app[CTX]
    body = {"status": "ok", "service": "lineage-sink", "store": store_id(ctx.store.dsn, ctx.store.database)}
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


async def _answer(ctx: ApiContext, actor: Actor, action: str, what: str, params: Mapping[str, Any], reason: str,
                  run: Callable[[], QueryResult]) -> web.Response:
    """Run an audited query on a worker thread and answer with its rows, or a one-line 400.

    Roles in ``api.reason_required`` must give a reason: without one the query does not run, and
    the refusal is recorded like any other.
    """
    def checked() -> QueryResult:
        require_reason(ctx, actor, reason)
        return run()

    return await answer_off_loop(
        partial(audited_query, ctx.audit, actor, action, what, params, reason, checked),
        lambda res: web.Response(body=dumps(result_json(res)), content_type="application/json"),
    )


async def sql(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    actor = actor_of(request)
    try:
        if request.content_type == "application/json":
            body = await request.json()
            text, params = str(body.get("sql", "")), dict(body.get("params") or {})
            reason = reason_of(request, body.get("reason"))
        else:
            text, params, reason = await request.text(), dict(request.query), reason_of(request)
    except (ValueError, AttributeError):
        return error_response(400, "body must be JSON {\"sql\": ..., \"params\": {...}} or plain SQL text")
    return await _answer(ctx, actor, SQL, text, params, reason,
                         partial(ctx.sandboxed, text, sandbox_role(actor.role), params))


async def named_query(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    actor = actor_of(request)
    name = request.match_info["name"]
    refused = require(request, QUERY_NEEDS.get(name, Action.QUERY))
    if refused is not None:
        return refused
    raw = dict(request.query)

    def run() -> QueryResult:
        spec = get_query(name)
        return ctx.query(spec.sql, spec.bind(dict(raw)), READONLY_SETTINGS)

    return await _answer(ctx, actor, QUERY, name, raw, reason_of(request), run)


async def _marquez(request: web.Request, what: str,
                   build: Callable[[marquez.Runner, Mapping[str, str]], dict[str, Any]]) -> web.Response:
    """A Marquez-compatible read, audited like a named query (action ``query``, ``what`` its name)."""
    ctx: ApiContext = request.app[CTX]
    actor = actor_of(request)
    raw = dict(request.query)
    reason = reason_of(request)

    def read(sql: str, params: Mapping[str, Any]) -> QueryResult:
        return ctx.query(sql, params, READONLY_SETTINGS)

    def run() -> dict[str, Any]:
        with ctx.audit.attempt(actor, QUERY, what, params=raw, reason=reason, refusals=(QueryError,)) as attempt:
            require_reason(ctx, actor, reason)
            doc = build(read, raw)
            attempt.rows = len(doc["graph"])
        return doc

    return await answer_off_loop(run, lambda doc: web.Response(body=dumps(doc), content_type="application/json"),
                                 not_found=(marquez.NodeNotFound,))


async def marquez_lineage(request: web.Request) -> web.Response:
    """``GET /api/v1/lineage?nodeId=...&depth=N``: Marquez's lineage graph (see :mod:`sinks.marquez`)."""
    return await _marquez(request, "marquez_lineage", marquez.lineage)


async def marquez_column_lineage(request: web.Request) -> web.Response:
    """``GET /api/v1/column-lineage?nodeId=...&depth=N&withDownstream=...``: Marquez's column lineage graph."""
    return await _marquez(request, "marquez_column_lineage", marquez.column_lineage)


DECRYPT_PATH = "/api/snapshots/{pointer:.+}:decrypt"
_DECRYPT_STATUS: dict[type[Exception], int] = {
    SubjectErased: 410, PointerError: 404, IntegrityError: 409, AuditError: 503, ReasonRequired: 400,
    KeyholderUnavailable: 503,
}


async def decrypt_snapshot(request: web.Request) -> web.Response:
    """``POST /api/snapshots/{pointer}:decrypt`` (investigators): the plaintext feature snapshot.

    Body (optional): ``{"reason": ..., "sha256": ...}``; the reason may come as the
    ``X-Lineage-Reason`` header instead and is required. Who is the key's name. Every attempt is
    audited, refused and failed ones too, and the audit entry is durable before the plaintext
    is released. The plaintext comes from the key holder, asked after the role and reason checks.
    """
    ctx: ApiContext = request.app[CTX]
    actor = actor_of(request)
    pointer = request.match_info["pointer"]
    try:
        body = await request.json() if request.can_read_body else {}
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        return error_response(400, 'body must be JSON {"reason": "...", "sha256": "..."} or empty')
    reason = reason_of(request, body.get("reason"))
    loop = asyncio.get_running_loop()
    if not allows(actor.role, Action.DECRYPT):
        await loop.run_in_executor(None, partial(
            ctx.audit.record, actor, DECRYPT, pointer, reason=reason, outcome="refused: role may not decrypt"))
        return forbidden(actor, Action.DECRYPT)
    sha256 = body.get("sha256")
    try:
        out = await loop.run_in_executor(None, partial(
            get_snapshot, ctx.settings, pointer, actor, reason, str(sha256) if sha256 else None, ctx.audit,
            opener=ctx.keyholder or KeyholderClient.from_settings(ctx.settings)))
    except (PiiError, AuditError) as exc:
        status = next((code for kind, code in _DECRYPT_STATUS.items() if isinstance(exc, kind)), 400)
        return error_response(status, str(exc))
    return web.Response(body=dumps({k: out[k] for k in ("pointer", "subject_ref", "snapshot")}),
                        content_type="application/json", headers={"Cache-Control": "no-store"})


def build_app(
    ctx: ApiContext,
    guard: Guard,
    mounts: Sequence[RouteMount] = (),
    metrics_providers: Sequence[MetricsProvider] = (),
    policy: Mapping[str, Need] | None = None,
) -> web.Application:
    """The sink's routes, then each of ``mounts``; ``/metrics`` also serves ``metrics_providers``.

    ``policy`` maps each mounted route, ``"METHOD path"`` or a bare ``path`` for every method (as
    registered, see :func:`~sinks.access.http.rule_for`), to what it needs; a route with no rule
    is an error here, at startup, rather than a route open to anyone.
    """
    app = web.Application(client_max_size=16 << 20, middlewares=[guard.middleware])
    app[CTX] = ctx
    app[METRICS_PROVIDERS] = tuple(metrics_providers)
    rules: dict[str, Need] = {
        "/health": PUBLIC,
        "/metrics": PUBLIC if ctx.settings.api.metrics_public else Action.METRICS,
        "/api/sql": Action.QUERY,
        "/api/query/{name}": Action.QUERY,  # and per query, see QUERY_NEEDS
        # Marquez-compatible reads; POST on the same path is the OpenLineage intake (mounted)
        f"GET {marquez.LINEAGE_PATH}": Action.QUERY,
        f"GET {marquez.COLUMN_LINEAGE_PATH}": Action.QUERY,
        **(policy or {}),
    }
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/sql", sql)
    app.router.add_get("/api/query/{name}", named_query)
    app.router.add_get(marquez.LINEAGE_PATH, marquez_lineage)
    app.router.add_get(marquez.COLUMN_LINEAGE_PATH, marquez_column_lineage)
    # any key: the handler checks the right itself, so a refused attempt is audited too
    guard.protect([app.router.add_post(DECRYPT_PATH, decrypt_snapshot)], ANY_KEY)
    guard.add_session_routes(app)
    for mount in mounts:
        mount(app)
    for route in app.router.routes():
        if route in guard.needs:
            continue
        path = route.resource.canonical if route.resource is not None else ""
        need = rule_for(rules, route.method, path)
        if need is None:
            raise ValueError(f"route {route.method} {path} has no access rule")
        guard.protect([route], need)
    return app
