"""Correlation and W3C trace context, carried in contextvars and copied into Kafka headers.

A request handler calls :func:`adopt_http_headers` once; every event emitted while handling
that request (same thread or asyncio task) then carries the request's correlation id and
``traceparent``. The stream apps read the same headers to keep one flow's rows together.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

from producers.uuid7 import uuid7

#: Kafka header names set by the emitter.
HEADER_EVENT_ID = "lineage-event-id"
HEADER_KIND = "lineage-kind"
HEADER_CORRELATION = "lineage-correlation-id"
HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"

#: HTTP headers a correlation id is adopted from, most specific first.
CORRELATION_HTTP_HEADERS = ("x-correlation-id", "x-request-id", "correlation-id")

correlation_id_var: ContextVar[str | None] = ContextVar("lineage_correlation_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("lineage_traceparent", default=None)
tracestate_var: ContextVar[str | None] = ContextVar("lineage_tracestate", default=None)

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """(trace_id, parent_id, flags) of a valid W3C ``traceparent``, else None (spec section 3.2)."""
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id, flags


def current_correlation_id() -> str | None:
    return correlation_id_var.get()


def current_traceparent() -> str | None:
    return traceparent_var.get()


@contextmanager
def correlation(correlation_id: str | None = None) -> Iterator[str]:
    """Run a block under ``correlation_id`` (a new UUIDv7 if None); yields the id."""
    cid = correlation_id or uuid7()
    token = correlation_id_var.set(cid)
    try:
        yield cid
    finally:
        correlation_id_var.reset(token)


@contextmanager
def trace_context(traceparent: str, tracestate: str | None = None) -> Iterator[None]:
    """Run a block under a W3C trace context; ValueError if ``traceparent`` is malformed."""
    if parse_traceparent(traceparent) is None:
        raise ValueError(f"not a valid W3C traceparent: {traceparent!r}")
    t1 = traceparent_var.set(traceparent.strip().lower())
    t2 = tracestate_var.set(tracestate)
    try:
        yield
    finally:
        tracestate_var.reset(t2)
        traceparent_var.reset(t1)


@dataclass
class Adopted:
    """What :func:`adopt_http_headers` set; ``reset()`` (or leaving the ``with``) restores the old values."""

    correlation_id: str | None
    traceparent: str | None
    _tokens: tuple[Token[str | None], ...]

    def reset(self) -> None:
        for token in reversed(self._tokens):
            token.var.reset(token)
        self._tokens = ()

    def __enter__(self) -> Adopted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()


def adopt_http_headers(headers: Mapping[str, str], *, generate: bool = False) -> Adopted:
    """Adopt an incoming request's correlation id and ``traceparent``/``tracestate``.

    Header names are matched case-insensitively. A malformed ``traceparent`` is ignored (W3C:
    restart the trace). With ``generate=True`` a request without a correlation id gets a new
    UUIDv7 so every event of the request still shares one. Usable as a context manager.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    cid = next((lower[h].strip() for h in CORRELATION_HTTP_HEADERS if lower.get(h, "").strip()), None)
    if cid is None and generate:
        cid = uuid7()
    tp = lower.get("traceparent")
    if tp is not None and parse_traceparent(tp) is None:
        tp = None
    tokens: list[Token[str | None]] = []
    if cid is not None:
        tokens.append(correlation_id_var.set(cid))
    if tp is not None:
        tokens.append(traceparent_var.set(tp.strip().lower()))
        tokens.append(tracestate_var.set(lower.get("tracestate")))
    return Adopted(cid, tp.strip().lower() if tp else None, tuple(tokens))


def outgoing_http_headers() -> dict[str, str]:
    """Headers to forward the current context to a downstream HTTP call."""
    out: dict[str, str] = {}
    cid, tp, ts = correlation_id_var.get(), traceparent_var.get(), tracestate_var.get()
    if cid:
        out["X-Correlation-ID"] = cid
    if tp:
        out["traceparent"] = tp
        if ts:
            out["tracestate"] = ts
    return out
