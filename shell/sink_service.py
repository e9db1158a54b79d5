"""The sink service's composition root: everything `lineage sink` runs, built in one place.

Kafka -> ClickHouse sink loop (its own thread), the queue-depth monitor (always: lag alerts do not
depend on the HTTP API), and, unless turned off, the HTTP API with the OpenLineage intake and the
dashboard mounted explicitly. In the embedded default this process owns the chDB directory;
`lineage query`, `lineage sql`, `lineage verify` and the dashboard reach the store through it.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import socket
import threading
from dataclasses import dataclass

import redis
from aiohttp import web

from lineage.exceptions import StackError
from lineage.keyspace import KeySpace
from lineage.settings import Settings
from lineage.topics import ensure_topics
from producers.config import EmitterConfig
from producers.emitter import Emitter
from sinks import explorer
from sinks.access.audit import AuditTrail
from sinks.access.http import PUBLIC, Guard, Need
from sinks.access.keys import ApiKeys
from sinks.access.roles import Action
from sinks.api_server import ApiContext, build_app
from sinks.clickhouse.checkpoints import publisher_from_settings
from sinks.clickhouse.client import Store
from sinks.clickhouse.loop import LoopConfig, SinkLoop, consumer_config
from sinks.clickhouse.metrics import SinkMetrics
from sinks.clickhouse.writer import ClickHouseSink
from sinks.exceptions import SinkError
from sinks.reports import http as reports_http
from stream_apps import dashboard, intake_http
from stream_apps.dashboard.data import metrics_text
from stream_apps.monitor.service import Monitor

log = logging.getLogger("lineage.sink")


@dataclass(frozen=True)
class SinkOptions:
    batch_max: int = 50_000
    linger_s: float = 0.5
    api: bool = True
    instance_id: str = ""


def instance_id(settings: Settings) -> str:
    """One stable id per (host, store): a restarted sink reclaims its partitions immediately."""
    digest = hashlib.sha256(settings.clickhouse_dsn.encode()).hexdigest()[:12]
    return f"clickhouse-sink.{socket.gethostname()}.{digest}"


def run_sink(settings: Settings, options: SinkOptions) -> None:
    """Build the sink service, run it until SIGINT/SIGTERM or a failure, then shut it down in order."""
    ensure_topics(settings)
    # claim the embedded store before the engine opens it; a command holding it is waited for
    store = Store.open(
        settings.clickhouse_dsn, settings.clickhouse_database,
        role="sink", api_url=settings.api_url if options.api else None, wait_s=60.0,
    )
    try:
        metrics = SinkMetrics()
        # the checkpoint signing key lives in this process and its 0600 file, never in the store
        writer = ClickHouseSink.from_settings(settings, store=store, checkpoints=publisher_from_settings(settings))
        writer.metrics = metrics
        loop = SinkLoop(
            consumer_config(settings.kafka_common(), f"{settings.app_id}.clickhouse-sink",
                            options.instance_id or instance_id(settings)),
            writer.topics,
            writer,
            metrics,
            LoopConfig(batch_max=options.batch_max, linger_s=options.linger_s),
        )
        audit = AuditTrail.from_settings(settings) if options.api else None
        try:
            api = ApiContext(settings, store, audit, metrics) if audit is not None else None
            asyncio.run(_serve(settings, loop, api))
        finally:
            if audit is not None:
                audit.close()
    finally:
        store.close()


async def _serve(settings: Settings, loop: SinkLoop, api: ApiContext | None) -> None:
    monitor = Monitor(settings)
    monitor.start()
    emitter: Emitter | None = None
    runner: web.AppRunner | None = None
    try:
        if api is not None:
            emitter = Emitter(EmitterConfig.from_settings(settings), "openlineage-http")
            runner = await _start_api(settings, api, monitor, emitter)
        await _run_loop(loop, settings, runner is not None)
    finally:
        if runner is not None:
            await runner.cleanup()
        if emitter is not None:
            await asyncio.to_thread(emitter.close)
        await monitor.stop()
    print("lineage sink: stopped", flush=True)


#: What each mounted route needs, by ``"METHOD path"`` or by path for every method (the sink's own
#: routes, e.g. ``GET /api/v1/lineage``, the Marquez-compatible read, are declared by ``build_app``).
ROUTE_POLICY: dict[str, Need] = {
    f"POST {intake_http.LINEAGE_PATH}": Action.INTAKE,
    f"POST {intake_http.BATCH_PATH}": Action.INTAKE,
    "/dashboard": PUBLIC,  # the page and its assets hold no data; it signs in with a key
    "/dashboard/": PUBLIC,
    "/dashboard/static": PUBLIC,
    "/api/dashboard/data": Action.QUERY,
    "/api/alerts": Action.QUERY,
    "/api/pipeline/stats": Action.QUERY,
    "/metrics/pipeline": Action.METRICS,
    reports_http.REPORTS_PATH: Action.REPORTS,  # and READ_ALL for the erasure report, checked by the handler
    **explorer.ROUTE_POLICY,
}


async def _start_api(settings: Settings, api: ApiContext, monitor: Monitor, emitter: Emitter) -> web.AppRunner:
    keys = ApiKeys(redis.Redis.from_url(settings.redis_url, socket_timeout=5), KeySpace.of(settings))
    app = build_app(
        api,
        Guard(keys, settings),
        mounts=[lambda a: intake_http.add_routes(a, emitter), lambda a: dashboard.add_routes(a, monitor),
                reports_http.add_routes, explorer.add_routes],
        metrics_providers=[lambda: metrics_text(monitor)],
        policy={**ROUTE_POLICY, "/metrics/pipeline": PUBLIC if settings.api.metrics_public else Action.METRICS},
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.api_host, settings.api_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StackError(
            f"cannot serve the sink API on {settings.api_host}:{settings.api_port}: {exc.strerror or exc}"
        ) from None
    return runner


async def _run_loop(loop: SinkLoop, settings: Settings, serving: bool) -> None:
    """Run the sink loop on its thread until a signal or its failure; flush its last batch."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            loop.run()
        except BaseException as exc:  # reported by the caller below, never swallowed
            failure.append(exc)

    thread = threading.Thread(target=work, name="clickhouse-sink", daemon=True)
    thread.start()
    stop = asyncio.Event()
    aio = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        aio.add_signal_handler(sig, stop.set)
    where = f"http://{settings.api_host}:{settings.api_port}" if serving else "no API"
    print(f"lineage sink: consuming {', '.join(loop.topics)}; serving {where}", flush=True)
    while not stop.is_set() and thread.is_alive():
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.2)
        except asyncio.TimeoutError:
            pass
    log.info("stopping: flushing the last batch")
    loop.stop()
    await aio.run_in_executor(None, thread.join)
    if failure:
        err = failure[0]
        if isinstance(err, SinkError):
            raise err
        raise SinkError(f"sink loop failed: {type(err).__name__}: {err}") from err
