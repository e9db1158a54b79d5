"""``GET /api/v1/reports/{kind}``: the audit reports, served by the sink as attachments.

Query parameters: ``format`` (``html`` default, ``pdf``, ``json``) and the report's own:
``prediction`` (provenance), ``namespace``, ``name``, ``since``, ``until`` (impact), ``model``,
``since`` (completeness), ``subject_ref`` (erasure: the subject's pseudonymous reference; the sink
holds no pseudonym key, so a raw subject id is refused, `lineage report erasure --subject` turns it
into the reference where the key is). The route needs ``Action.REPORTS`` (auditor, investigator,
admin); the erasure report, which lists subject-level data, also ``Action.READ_ALL``. Roles in
``api.reason_required`` give a reason (``X-Lineage-Reason``). Answers: 400 (one line) for a bad
parameter, 404 when nothing is recorded about the subject of the question, 503 when the audit log
or Chromium (pdf) is unavailable. Every attempt is audited; a report's record carries its SHA-256.
"""
from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import redis
from aiohttp import web

from sinks.access.audit import REPORT
from sinks.access.http import REASON_HEADER, actor_of, forbidden, reason_of
from sinks.access.roles import Action, allows
from sinks.api_server import CTX, ApiContext, answer_off_loop, error_response
from sinks.clickhouse.client import QueryResult
from sinks.clickhouse.queries import READONLY_SETTINGS, get_query
from sinks.exceptions import AuditError
from sinks.reports import subjects
from sinks.reports.gather import ReportNotFound, Source
from sinks.reports.params import MEDIA_TYPES
from sinks.reports.pdf import PdfUnavailable
from sinks.reports.service import make_report

REPORTS_PATH = "/api/v1/reports/{kind}"
_REDIS: web.AppKey[Any] = web.AppKey("lineage_reports_redis", object)




def sink_source(ctx: ApiContext, client: Any) -> Source:
    """A report :class:`Source` on the sink's own API connections."""

    def named(name: str, params: dict[str, Any]) -> QueryResult:
        spec = get_query(name)
        return ctx.query(spec.sql, spec.bind(params), READONLY_SETTINGS)

    def query(sql: str, params: dict[str, Any]) -> QueryResult:
        return ctx.query(sql, params, READONLY_SETTINGS)

    return Source(ctx.settings, named, query, subjects.erased_at(ctx.settings, client), subjects.sealed(ctx.settings))


async def report(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    actor = actor_of(request)
    kind = request.match_info["kind"]
    raw = dict(request.query)
    fmt = raw.pop("format", "html")
    reason = reason_of(request)
    loop = asyncio.get_running_loop()
    refusal = ""
    if kind == "erasure" and not allows(actor.role, Action.READ_ALL):
        refusal = "refused: role may not read subject-level data"
    elif "subject" in raw and kind == "erasure":
        refusal = ("refused: the sink holds no pseudonym key; pass subject_ref "
                   "(`lineage report erasure --subject ID` computes it)")
    elif not reason and actor.role.value in ctx.settings.api.reason_required:
        refusal = f"refused: a reason is required for the {actor.role.value} role ({REASON_HEADER} header)"
    if refusal:
        try:
            await loop.run_in_executor(None, partial(ctx.audit.record, actor, REPORT, kind, params=raw, reason=reason,
                                                     outcome=refusal))
        except AuditError as exc:
            return error_response(503, str(exc))
        if "role may not" in refusal:
            return forbidden(actor, Action.READ_ALL)
        return error_response(400, refusal.removeprefix("refused: "))
    source = sink_source(ctx, request.app[_REDIS])

    def attachment(made: Any) -> web.Response:
        headers = {
            "Content-Type": MEDIA_TYPES[made.fmt],
            "Content-Disposition": f'attachment; filename="{made.filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Report-SHA256": made.sha256,
            "X-Report-Verified": "true" if made.report["integrity"].get("verified") else "false",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        }
        return web.Response(body=made.body, headers=headers)

    return await answer_off_loop(partial(make_report, source, kind, raw, fmt, actor, ctx.audit, reason), attachment,
                                 not_found=(ReportNotFound,), unavailable=(PdfUnavailable,))


def add_routes(app: web.Application) -> None:
    """Mount the report route (its rule: ``ROUTE_POLICY[REPORTS_PATH] = Action.REPORTS``)."""

    async def open_redis(app: web.Application) -> None:
        app[_REDIS] = redis.Redis.from_url(app[CTX].settings.redis_url, socket_timeout=10)

    async def close_redis(app: web.Application) -> None:
        app[_REDIS].close()

    app.on_startup.append(open_redis)
    app.on_cleanup.append(close_redis)
    app.router.add_get(REPORTS_PATH, report, allow_head=False)
