"""OpenLineage HTTP intake: ``POST /api/v1/lineage`` and ``POST /api/v1/lineage/batch``.

Mounted by the process that serves the API (``add_routes(app, emitter)``). An unmodified OpenLineage client configured with ``url: <api.url>`` posts
here; each event is converted (:mod:`producers.openlineage`) and emitted through one
:class:`Emitter` (spool ``openlineage-http``), so it flows through the same pipeline as
SDK events. The request's ``X-Correlation-ID`` / ``traceparent`` are propagated.

Every event is checked synchronously with what the worker checks without state (conversion,
the rule set of :mod:`lineage.rules`, the Avro schema, the message size), so a 2xx means the
event will be stored; only the run state machine and the seal (keys) are left to the worker.

Responses: 201 ``{"event_id", "kind"}`` for one event (plus ``incomplete`` and
``dropped_facets`` when the stored record will lack a recommended field or lose a facet);
400 ``{"error", "detail"}`` with the dead-letter reason the worker would give; 503 with
``Retry-After`` while the local spool is full. A batch (a JSON array, ``{"events": [...]}`` or
NDJSON) is answered per event: ``{"accepted", "rejected", "results": [{"index", "status",
"event_id", "kind"} | {"index", "status", "error", "detail"}]}``, with 200 when every event was
accepted, 400 when none was, 207 otherwise; the valid events of a batch are accepted.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from producers.context import adopt_http_headers
from lineage.exceptions import EncodeError
from lineage.rules import Findings, InvalidEvent
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


def _convert(emitter: Emitter, item: Any) -> tuple[str, dict[str, Any], Findings]:
    """Convert and check one event as the worker would, without state; raises :class:`_Refused`."""
    try:
        kind, record = from_openlineage(item)
        return kind, record, emitter.check((kind, record))
    except OpenLineageError as exc:
        raise _Refused(exc.reason, exc.detail) from None
    except InvalidEvent as exc:
        raise _Refused(exc.reason, exc.detail) from None
    except EncodeError as exc:
        raise _Refused("openlineage_invalid", str(exc)) from None


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _accepted(event_id: str, kind: str, found: Findings) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": event_id, "kind": kind}
    if found:
        out.update(found.as_dict())
    return out


async def post_lineage(request: web.Request) -> web.Response:
    raw = await _body(request)
    if isinstance(raw, web.Response):
        return raw
    emitter = _emitter(request)
    try:
        kind, record, found = _convert(emitter, _parse_one(raw))
    except OpenLineageError as exc:
        return _error(400, exc.reason, exc.detail)
    except _Refused as exc:
        return _error(400, exc.reason, exc.detail)
    try:
        with adopt_http_headers(request.headers):
            event_id = emitter.emit_record(kind, record)
    except SpoolFullError as exc:
        return web.json_response({"error": "spool_full", "detail": str(exc)}, status=503, headers={"Retry-After": "5"})
    return web.json_response(_accepted(event_id, kind, found), status=201)


async def post_batch(request: web.Request) -> web.Response:
    raw = await _body(request)
    if isinstance(raw, web.Response):
        return raw
    try:
        items = _parse_batch(raw)
    except OpenLineageError as exc:
        return _error(400, exc.reason, exc.detail)
    emitter = _emitter(request)
    results: list[dict[str, Any]] = []
    accepted = 0
    with adopt_http_headers(request.headers):
        for i, item in enumerate(items):
            try:
                kind, record, found = _convert(emitter, item)
            except _Refused as exc:
                results.append({"index": i, "status": 400, "error": exc.reason, "detail": exc.detail})
                continue
            try:
                event_id = emitter.emit_record(kind, record)
            except SpoolFullError as exc:
                results.append({"index": i, "status": 503, "error": "spool_full", "detail": str(exc)})
                continue
            results.append({"index": i, "status": 201, **_accepted(event_id, kind, found)})
            accepted += 1
    status = 200 if accepted == len(items) else 400 if accepted == 0 and all(r["status"] == 400 for r in results) else 207
    headers = {"Retry-After": "5"} if any(r["status"] == 503 for r in results) else None
    return web.json_response({"accepted": accepted, "rejected": len(items) - accepted, "results": results},
                             status=status, headers=headers)


def add_routes(app: web.Application, emitter: Emitter) -> None:
    """Add the OpenLineage endpoints to ``app``; events go out through ``emitter`` (its owner closes it)."""
    app[EMITTER_KEY] = emitter
    app.router.add_post(LINEAGE_PATH, post_lineage)
    app.router.add_post(BATCH_PATH, post_batch)
