"""Run the pipeline's own processes (stream workers and the ClickHouse sink) in the background.

Each is a `lineage` sub-command started detached with the caller's settings, registered under
``<data_dir>/run/`` so `lineage stack down` stops it too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from lineage.settings import Settings, settings_to_env
from shell.stack.process import ManagedProcess


def _lineage_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "shell", *args]


def worker_process(settings: Settings, index: int = 0) -> ManagedProcess:
    """Stream worker number `index`."""
    env = {**os.environ, **settings_to_env(settings)}
    return ManagedProcess.in_data_dir(
        settings.data_dir,
        f"worker-{index}",
        _lineage_argv("worker"),
        env=env,
        cwd=Path.cwd(),
        meta={"role": "worker"},
    )


def sink_process(settings: Settings, api: bool = True) -> ManagedProcess:
    """The single ClickHouse sink (owner of the embedded store; serves the API and dashboard unless ``api`` is off)."""
    env = {**os.environ, **settings_to_env(settings)}
    argv = _lineage_argv("sink") if api else _lineage_argv("sink", "--no-api")
    return ManagedProcess.in_data_dir(settings.data_dir, "sink", argv, env=env, cwd=Path.cwd(), meta={"role": "sink"})


def start_pipeline(settings: Settings, workers: int = 1, sink_settings: Settings | None = None) -> list[ManagedProcess]:
    """Start (idempotently) `workers` stream workers and the sink (with ``sink_settings`` when its
    credentials differ from the workers', as on a secured stack)."""
    procs = [worker_process(settings, i) for i in range(workers)] + [sink_process(sink_settings or settings)]
    for proc in procs:
        proc.start()
    return procs
