"""The Faust app factory: ``create_app(settings)`` builds a fresh app (no module-level app object)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from lineage.settings import Settings


def broker_urls(bootstrap: str) -> str:
    """``host1:9092,host2:9092`` -> Faust's ``kafka://host1:9092;kafka://host2:9092``."""
    return ";".join(f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip())


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    """The lineage pipeline app: the event path (model-lineage table + consumer loop) and the completeness windows."""
    datadir = (Path(settings.data_dir) / "faust" / settings.app_id).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        store="memory://",  # recovers from the changelog topic on start
        datadir=str(datadir),
        autodiscover=False,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication,
        consumer_auto_offset_reset="earliest",
        # no web server: a worker serves nothing (its counters are in Redis, read through the
        # sink's authenticated API), so it opens no port that would need its own access control
        web_enabled=False,
        producer_acks=-1,
        stream_buffer_maxsize=16_384,
        broker_commit_every=5_000,
        broker_commit_interval=1.0,
        # A crashed worker's partitions move after 10 s instead of Faust's 60 s default, so
        # recovery (and window evaluation) resumes well inside the alert evaluation horizon.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_max_poll_records=5_000,
        **overrides,
    )
    from stream_apps import windows
    from stream_apps.event_path import service

    service.register(app, settings)
    windows.register(app, settings)
    return app
