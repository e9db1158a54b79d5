"""Run the pipeline's own processes (key holder, stream workers and the ClickHouse sink) in the background.

Each is a `lineage` sub-command started detached with the caller's settings, registered under
``<data_dir>/run/`` so `lineage stack down` stops it too. Key-holder secrets (the KEK, the
pseudonym key: :data:`lineage.settings.KEY_HOLDER_SECRETS`) go to the key holder and the workers
only; the sink gets neither from the settings nor from this process's own environment.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from lineage.settings import Settings, key_holder_env_names, settings_to_env, without_key_secrets
from shell.stack.process import ManagedProcess


def _lineage_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "shell", *args]


def keyholder_process(settings: Settings) -> ManagedProcess:
    """The key holder: unwraps data keys for the sink over ``<data_dir>/run/keyholder.sock``."""
    env = {**os.environ, **settings_to_env(settings, key_holder=True)}
    return ManagedProcess.in_data_dir(
        settings.data_dir, "keyholder", _lineage_argv("keyholder"), env=env, cwd=Path.cwd(), meta={"role": "keyholder"}
    )


def worker_process(settings: Settings, index: int = 0) -> ManagedProcess:
    """Stream worker number `index` (a key holder: it wraps data keys and makes subject refs)."""
    env = {**os.environ, **settings_to_env(settings, key_holder=True)}
    return ManagedProcess.in_data_dir(
        settings.data_dir,
        f"worker-{index}",
        _lineage_argv("worker"),
        env=env,
        cwd=Path.cwd(),
        meta={"role": "worker"},
    )


def sink_process(settings: Settings, api: bool = True) -> ManagedProcess:
    """The single ClickHouse sink (owner of the embedded store; serves the API and dashboard unless ``api`` is off).

    It holds no key: snapshot decrypts go to the key holder (:func:`keyholder_process`)."""
    env = {**without_key_secrets(os.environ), **settings_to_env(settings)}
    argv = _lineage_argv("sink") if api else _lineage_argv("sink", "--no-api")
    proc = ManagedProcess.in_data_dir(settings.data_dir, "sink", argv, env=env, cwd=Path.cwd(), meta={"role": "sink"})
    proc.env_drop = key_holder_env_names()
    return proc


def start_pipeline(settings: Settings, workers: int = 1, sink_settings: Settings | None = None) -> list[ManagedProcess]:
    """Start (idempotently) the key holder, `workers` stream workers and the sink (with ``sink_settings``
    when its credentials differ from the workers', as on a secured stack; the key holder runs with
    the workers')."""
    procs = [keyholder_process(settings)] + [worker_process(settings, i) for i in range(workers)]
    procs.append(sink_process(sink_settings or settings))
    for proc in procs:
        proc.start()
    return procs
