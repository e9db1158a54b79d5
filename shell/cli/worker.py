"""`lineage worker`: run the stream-processing worker (Faust) in this process until SIGINT/SIGTERM."""
from __future__ import annotations

import typer

from lineage.settings import load_settings
from lineage.topics import ensure_topics


def worker(
    log_level: str = typer.Option(None, "--log-level", help="debug|info|warning|error (default: settings.log_level)."),
) -> None:
    """Validate, enrich, sample and PII-route lineage events; several workers share the load."""
    from stream_apps.app import create_app, create_worker

    settings = load_settings()
    ensure_topics(settings)
    app = create_app(settings)
    level = (log_level or settings.log_level).lower()
    # Faust installs SIGINT/SIGTERM handlers: in-flight batches finish, acked offsets are committed.
    create_worker(app, level).execute_from_commandline()
