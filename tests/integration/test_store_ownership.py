"""A starting `lineage sink` and a query command never race for the embedded store.

Both claim the store (``<dir>.owner``) before the engine opens it: a command that finds a
starting sink waits for its API, and a sink that finds a command holding the store waits for it
instead of dying on the engine's lock. Real `lineage sink` subprocesses on the real broker.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import api_token, wait_until
from integration.sink_support import free_port, start_sink, stop_sink, wait_healthy
from sinks.clickhouse.backend import DirectBackend, RemoteBackend, open_backend, sink_health
from sinks.clickhouse.ownership import read_owner
from sinks.clickhouse.client import store_id

pytestmark = [pytest.mark.integration]


def test_a_starting_sink_waits_for_a_command_holding_the_store(settings_factory, tmp_path: Path) -> None:
    settings = settings_factory(api_port=free_port())
    api_token(settings)  # the CLI key of this deployment (credentials file), as after `make demo`
    held = open_backend(settings, wait_s=5)  # no sink yet: the command opens the store itself
    assert isinstance(held, DirectBackend)
    log = tmp_path / "sink.log"
    proc = start_sink(settings, log, "--linger", "0.2")
    try:
        time.sleep(3.0)  # long enough for the sink to reach the store
        assert proc.poll() is None, log.read_text()[-3000:]  # waiting, not dead on the engine's lock
        assert sink_health(settings.api_url) is None
        assert held.sql("SELECT count() AS n FROM raw_events").rows == [(0,)]
        held.close()
        health = wait_healthy(settings, proc, log)
        assert health["store"] == store_id(settings.clickhouse_dsn, settings.clickhouse_database)
        owner = read_owner(settings.clickhouse_dsn)
        assert owner is not None and (owner.pid, owner.role, owner.api_url) == (proc.pid, "sink", settings.api_url)
    finally:
        held.close()
        assert stop_sink(proc) == 0, log.read_text()[-3000:]


def test_a_command_waits_for_a_starting_sink_instead_of_racing_it(settings_factory, tmp_path: Path) -> None:
    settings = settings_factory(api_port=free_port())
    api_token(settings)  # the CLI key of this deployment (credentials file), as after `make demo`
    log = tmp_path / "sink.log"
    proc = start_sink(settings, log, "--linger", "0.2")
    try:
        # as soon as the sink has claimed the store (it opens the engine and its API after that)
        wait_until(lambda: (o := read_owner(settings.clickhouse_dsn)) is not None and o.pid == proc.pid, 60,
                   "the sink to claim the store", interval=0.01)
        backend = open_backend(settings, wait_s=60)
        try:
            assert isinstance(backend, RemoteBackend)
            assert backend.sql("SELECT count() AS n FROM raw_events").rows == [(0,)]
        finally:
            backend.close()
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        assert stop_sink(proc) == 0, log.read_text()[-3000:]
    # with the sink gone the command opens the store itself, at once
    backend = open_backend(settings, wait_s=0)
    try:
        assert isinstance(backend, DirectBackend)
    finally:
        backend.close()
