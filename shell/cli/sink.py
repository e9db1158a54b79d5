"""`lineage sink`: Kafka -> ClickHouse sink, lag monitor and query API, in one process (see
:mod:`shell.sink_service`)."""
from __future__ import annotations

import logging
import sys

import typer

from lineage.settings import load_settings


def sink(
    batch_max: int = typer.Option(50_000, "--batch-max", min=1, help="Messages per ClickHouse insert."),
    linger: float = typer.Option(0.5, "--linger", min=0.0, help="Seconds before a partial batch is flushed."),
    no_api: bool = typer.Option(False, "--no-api", help="Do not serve the HTTP API."),
    render_ddl: bool = typer.Option(False, "--render-ddl", help="Print the schema DDL and exit."),
    cluster: str = typer.Option("", "--cluster", help="With --render-ddl: ON CLUSTER / Replicated / Distributed DDL."),
    instance_id: str = typer.Option("", "--instance-id", help="Static consumer-group member id (default: host + store)."),
) -> None:
    """Consume graph, metrics, alerts and audit topics into ClickHouse (commit after insert) and serve queries."""
    from sinks.clickhouse.cluster import render_cluster_ddl, render_single_ddl

    if render_ddl:
        sys.stdout.write(render_cluster_ddl(cluster) if cluster else render_single_ddl())
        return
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from shell.sink_service import SinkOptions, run_sink

    run_sink(settings, SinkOptions(batch_max=batch_max, linger_s=linger, api=not no_api, instance_id=instance_id))
