"""`lineage sink`: Kafka -> ClickHouse sink plus the query API, in one process.

In the embedded default this process owns the chDB directory; `lineage query`, `lineage sql`,
`lineage verify` and the dashboard reach the store through its HTTP API.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading

import typer

from lineage.exceptions import StackError
from lineage.settings import load_settings

log = logging.getLogger("lineage.sink")


def sink(
    batch_max: int = typer.Option(50_000, "--batch-max", min=1, help="Messages per ClickHouse insert."),
    linger: float = typer.Option(0.5, "--linger", min=0.0, help="Seconds before a partial batch is flushed."),
    no_api: bool = typer.Option(False, "--no-api", help="Do not serve the HTTP API."),
    render_ddl: bool = typer.Option(False, "--render-ddl", help="Print the schema DDL and exit."),
    cluster: str = typer.Option("", "--cluster", help="With --render-ddl: ON CLUSTER / Replicated / Distributed DDL."),
    instance_id: str = typer.Option("", "--instance-id", help="Static consumer-group member id (default: host + store)."),
) -> None:
    """Consume graph, metrics and alerts topics into ClickHouse (commit after insert) and serve queries."""
    from sinks.clickhouse.cluster import render_cluster_ddl, render_single_ddl

    if render_ddl:
        sys.stdout.write(render_cluster_ddl(cluster) if cluster else render_single_ddl())
        return
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from lineage.topics import ensure_topics
    from sinks.api_server import ApiContext, build_app
    from sinks.clickhouse.client import Store
    from sinks.clickhouse.loop import LoopConfig, SinkLoop, consumer_config
    from sinks.clickhouse.metrics import SinkMetrics
    from sinks.clickhouse.writer import ClickHouseSink

    ensure_topics(settings)
    # claim the embedded store before the engine opens it; a command holding it is waited for
    store = Store.open(
        settings.clickhouse_dsn, settings.clickhouse_database,
        role="sink", api_url=None if no_api else settings.api_url, wait_s=60.0,
    )
    try:
        metrics = SinkMetrics()
        writer = ClickHouseSink.from_settings(settings, store=store)
        writer.metrics = metrics
        loop = SinkLoop(
            consumer_config(settings.kafka_common(), f"{settings.app_id}.clickhouse-sink", instance_id or _instance_id(settings)),
            writer.topics,
            writer,
            metrics,
            LoopConfig(batch_max=batch_max, linger_s=linger),
        )
        app = None if no_api else build_app(ApiContext(settings, store, metrics))
        asyncio.run(_serve(loop, app, settings.api_host, settings.api_port, writer.topics))
    finally:
        store.close()


def _instance_id(settings: object) -> str:
    """One stable id per (host, store): a restarted sink reclaims its partitions immediately."""
    import hashlib
    import socket

    dsn = getattr(settings, "clickhouse_dsn", "")
    return f"clickhouse-sink.{socket.gethostname()}.{hashlib.sha256(dsn.encode()).hexdigest()[:12]}"


async def _serve(loop: object, app: object, host: str, port: int, topics: list[str]) -> None:
    from aiohttp import web

    from sinks.clickhouse.loop import SinkLoop
    from sinks.exceptions import SinkError

    assert isinstance(loop, SinkLoop)
    runner = None
    if app is not None:
        assert isinstance(app, web.Application)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise StackError(f"cannot serve the sink API on {host}:{port}: {exc.strerror or exc}") from None
    failure: list[BaseException] = []

    def work() -> None:
        try:
            loop.run()
        except BaseException as exc:  # reported by the main thread below, never swallowed
            failure.append(exc)

    thread = threading.Thread(target=work, name="clickhouse-sink", daemon=True)
    thread.start()
    stop = asyncio.Event()
    aio = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        aio.add_signal_handler(sig, stop.set)
    where = f"http://{host}:{port}" if runner else "no API"
    print(f"lineage sink: consuming {', '.join(topics)}; serving {where}", flush=True)
    while not stop.is_set() and thread.is_alive():
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.2)
        except asyncio.TimeoutError:
            pass
    log.info("stopping: flushing the last batch")
    loop.stop()
    await aio.run_in_executor(None, thread.join)
    if runner is not None:
        await runner.cleanup()
    if failure:
        err = failure[0]
        if isinstance(err, SinkError):
            raise err
        raise SinkError(f"sink loop failed: {type(err).__name__}: {err}") from err
    print("lineage sink: stopped", flush=True)
