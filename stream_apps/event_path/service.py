"""The event path inside the Faust app: the model-lineage table, the counters page and the service
that runs the consumer loop (:mod:`stream_apps.event_path.consumer`) on its own thread.

The table (changelog-backed, replicated to every worker) is what inference events are joined
against; the consumer loop reads it before each batch and writes the batch's training lineage
back. An infrastructure failure retries a batch (never committed, never dead-lettered); a bug
tripped by one message dead-letters that message and the rest flows on.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import faust
import mode

from lineage.settings import Settings
from stream_apps.event_path.consumer import ConsumerLoop

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings) -> None:
    """Declare the model-lineage table and the event path service on ``app``."""
    table = app.GlobalTable(
        "model_lineage",
        default=None,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        partitions=1,
        recovery_buffer_size=1,
        help="model@version -> training run + feature sets (changelog-backed)",
    )

    changelog = table.changelog_topic.get_topic_name()

    async def _snapshot() -> dict[str, Any]:
        return dict(table.data.items())

    async def _apply(updates: list[tuple[str, dict[str, Any]]]) -> None:
        for key, value in updates:
            table.data[key] = value  # our own worker sees it at once; others via the changelog

    @app.service
    class EventPathService(mode.Service):
        """Runs the consumer loop; started after table recovery, stopped first."""

        consumer_loop: ConsumerLoop
        running: asyncio.Future[None]

        async def on_start(self) -> None:
            aio = asyncio.get_running_loop()
            self.consumer_loop = ConsumerLoop(
                settings,
                changelog,
                snapshot=lambda: asyncio.run_coroutine_threadsafe(_snapshot(), aio).result(60),
                apply=lambda u: asyncio.run_coroutine_threadsafe(_apply(u), aio).result(60),
            )
            self.running = asyncio.ensure_future(self.consumer_loop.run_in_thread())
            self.running.add_done_callback(self._finished)

        def _finished(self, task: asyncio.Future[None]) -> None:
            if not task.cancelled() and task.exception() is not None and not self.should_stop:
                log.critical("consumer loop failed: %r; stopping the worker", task.exception())
                asyncio.ensure_future(self.crash(cast(BaseException, task.exception())))

        async def on_stop(self) -> None:
            self.consumer_loop.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self.running), 120)
            except Exception:  # noqa: BLE001 - already logged by _finished / the consumer loop
                pass
