"""Correlation id and W3C trace context: parsing, adoption from HTTP headers, isolation per context."""
from __future__ import annotations

import asyncio

import pytest

from producers import context as ctx

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value,ok",
    [
        (TP, True),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),  # zero trace id
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),  # zero parent id
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),  # forbidden version
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", False),  # v00 has no tail
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", True),  # future version
        ("garbage", False),
    ],
)
def test_parse_traceparent(value: str, ok: bool) -> None:
    assert (ctx.parse_traceparent(value) is not None) is ok


def test_adopt_http_headers_sets_and_resets() -> None:
    assert ctx.current_correlation_id() is None
    with ctx.adopt_http_headers({"X-Request-ID": "req-1", "TraceParent": TP, "tracestate": "a=1"}) as got:
        assert got.correlation_id == "req-1"
        assert ctx.current_correlation_id() == "req-1"
        assert ctx.current_traceparent() == TP
        assert ctx.outgoing_http_headers() == {"X-Correlation-ID": "req-1", "traceparent": TP, "tracestate": "a=1"}
    assert ctx.current_correlation_id() is None
    assert ctx.current_traceparent() is None


def test_malformed_traceparent_is_ignored_and_generate_gives_an_id() -> None:
    with ctx.adopt_http_headers({"traceparent": "bogus"}, generate=True) as got:
        assert got.traceparent is None
        assert ctx.current_traceparent() is None
        assert got.correlation_id and ctx.current_correlation_id() == got.correlation_id


def test_context_is_per_task() -> None:
    async def handle(i: int) -> str | None:
        with ctx.adopt_http_headers({"x-correlation-id": f"c{i}"}):
            await asyncio.sleep(0.01)
            return ctx.current_correlation_id()

    async def main() -> list[str | None]:
        return await asyncio.gather(*(handle(i) for i in range(5)))

    assert asyncio.run(main()) == [f"c{i}" for i in range(5)]


def test_correlation_and_trace_context_blocks() -> None:
    with ctx.correlation() as cid, ctx.trace_context(TP):
        assert ctx.current_correlation_id() == cid
        assert ctx.current_traceparent() == TP
    with pytest.raises(ValueError):
        with ctx.trace_context("nope"):
            pass
