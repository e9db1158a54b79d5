"""OpenLineage HTTP intake: ``POST /api/v1/lineage`` and ``POST /api/v1/lineage/batch``.

Mounted by the process that serves the API (``add_routes(app, emitter)``). An unmodified OpenLineage client configured with ``url: <api.url>`` posts
here; each event is converted (:mod:`producers.openlineage`) and emitted through one
:class:`Emitter` (spool ``openlineage-http``), so it flows through the same pipeline as
SDK events. The request's ``X-Correlation-ID`` / ``traceparent`` are propagated.

Responses: 201 ``{"event_id", "kind"}`` for one event; 200 ``{"accepted": n, "event_ids"}``
for a batch (a JSON array, ``{"events": [...]}`` or NDJSON); 400 ``{"error", "detail"}``
(batch: ``{"error", "rejected": [{"index", "error", "detail"}]}``; nothing of an invalid
batch is emitted); 503 with ``Retry-After`` while the local spool is full.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from producers.context import adopt_http_headers
from producers.emitter import Emitter
from producers.exceptions import OpenLineageError, SpoolFullError
from producers.openlineage import from_openlineage

log = logging.getLogger(__name__)

LINEAGE_PATH = "/api/v1/lineage"
BATCH_PATH = "/api/v1/lineage/batch"
MAX_BODY = 16 << 20
EMITTER_KEY = web.AppKey("lineage_intake_emitter", Emitter)


def _error(status: int, reason: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, "detail": detail, **extra}, status=status)


async def _body(request: web.Request) -> bytes | web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, "too_large", f"body over {MAX_BODY} bytes")
    return await request.read()


def _parse_one(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise OpenLineageError("invalid_json", str(exc)) from None


def _parse_batch(raw: bytes) -> list[Any]:
    text = raw.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        try:  # NDJSON
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise OpenLineageError("invalid_json", f"neither a JSON array nor NDJSON: {exc}") from None
    if isinstance(obj, dict) and isinstance(obj.get("events"), list):
        return list(obj["events"])
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        return [obj]
    raise OpenLineageError("invalid_json", "batch must be an array of events")


def _emitter(request: web.Request) -> Emitter:
    return request.app[EMITTER_KEY]


async def post_lineage(request: web.Request) -> web.Response:
    raw = await _body(request)
    if isinstance(raw, web.Response):
        return raw
    try:
        kind, record = from_openlineage(_parse_one(raw))
    except OpenLineageError as exc:
        return _error(400, exc.reason, exc.detail)
    try:
        with adopt_http_headers(request.headers):
            event_id = _emitter(request).emit_record(kind, record)
    except SpoolFullError as exc:
        return web.json_response({"error": "spool_full", "detail": str(exc)}, status=503, headers={"Retry-After": "5"})
    return web.json_response({"event_id": event_id, "kind": kind}, status=201)


async def post_batch(request: web.Request) -> web.Response:
    raw = await _body(request)
    if isinstance(raw, web.Response):
        return raw
    try:
        items = _parse_batch(raw)
    except OpenLineageError as exc:
        return _error(400, exc.reason, exc.detail)
    converted: list[tuple[str, dict[str, Any]]] = []
    rejected: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            converted.append(from_openlineage(item))
        except OpenLineageError as exc:
            rejected.append({"index": i, "error": exc.reason, "detail": exc.detail})
    if rejected:
        return _error(400, "invalid_events", f"{len(rejected)} of {len(items)} events are invalid; none was accepted",
                      rejected=rejected)
    emitter = _emitter(request)
    ids: list[str] = []
    try:
        with adopt_http_headers(request.headers):
            for kind, record in converted:
                ids.append(emitter.emit_record(kind, record))
    except SpoolFullError as exc:
        return web.json_response({"error": "spool_full", "detail": str(exc), "accepted": len(ids), "event_ids": ids},
                                 status=503, headers={"Retry-After": "5"})
    return web.json_response({"accepted": len(ids), "event_ids": ids}, status=200)


def add_routes(app: web.Application, emitter: Emitter) -> None:
    """Add the OpenLineage endpoints to ``app``; events go out through ``emitter`` (its owner closes it)."""
    app[EMITTER_KEY] = emitter
    app.router.add_post(LINEAGE_PATH, post_lineage)
    app.router.add_post(BATCH_PATH, post_batch)
