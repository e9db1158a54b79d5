"""`lineage keyholder`: unwrap data keys for the sink over a private Unix socket (see :mod:`shell.keyholder`)."""
from __future__ import annotations

import asyncio
import logging
import sys

from lineage.settings import load_settings


def keyholder() -> None:
    """Hold the KEK for the sink: open snapshots and sealed dead letters it asks for, nothing else.

    Listens on <data_dir>/run/keyholder.sock (0600, same OS user only) until SIGINT/SIGTERM.
    The pipeline `lineage demo` starts runs one already.
    """
    from shell.keyholder import Keyholder, serve

    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    asyncio.run(serve(settings, Keyholder.from_settings(settings)))
