"""The pipeline's CPU and output I/O in a child process, so the consumer thread keeps its own core.

The event path (parent) consumes, hands each batch (plain tuples: cheap to pickle) plus the changes
of the model-lineage table since the previous batch to the child, waits for the child's answer
and only then commits. A restarted child gets the whole table with its first batch. The child owns the per-process
resources (Redis, data keys, snapshot store, producer); it is spawned (never forked from a
threaded process), ignores SIGINT/SIGTERM (the parent stops it after its last batch) and exits
when the parent goes away. Nothing survives a restart in it: state is in Redis and the table.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from stream_apps.exceptions import StreamAppError
from stream_apps.pipeline import INFRA_ERRORS, InMessage

log = logging.getLogger(__name__)
Reply = tuple[dict[str, int], list[tuple[str, dict[str, Any]]]]
#: A consumed record as it crosses the pipe: (topic, partition, offset, key, value, headers).
RawMessage = tuple[str, int, int, "bytes | None", "bytes | None", list[tuple[str, "bytes | None"]]]
#: Table changes since the previous batch: (whole table?, changed entries, removed keys).
TableDelta = tuple[bool, dict[str, Any], list[str]]


_ABSENT = object()


class OffloadRetry(StreamAppError):
    """The child hit an infrastructure error (or died); the batch must be retried, not acked."""


def _serve(conn: Connection, settings: Any, changelog: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from stream_apps.agents import Runtime

    lineage: dict[str, Any] = {}
    runtime = Runtime(settings, changelog, lineage.get)
    try:
        while True:
            try:
                item = conn.recv()
            except EOFError:  # parent gone
                return
            if item is None:
                return
            raw, (full, changed, removed) = item
            if full:
                lineage.clear()
            lineage.update(changed)
            for key in removed:
                lineage.pop(key, None)
            msgs = [InMessage(*m) for m in raw]
            try:
                result = runtime.prepare(msgs)
                runtime.deliver(result)
            except INFRA_ERRORS as exc:
                conn.send(("retry", f"{type(exc).__name__}: {exc}"))
                continue
            conn.send(("ok", (dict(result.counters), result.table_updates)))
    finally:
        runtime.close()


class Offload:
    """Parent side: one child per event path; restarted when it dies."""

    def __init__(self, settings: Any, changelog: str) -> None:
        self.settings = settings
        self.changelog = changelog
        self._ctx = multiprocessing.get_context("spawn")
        self._conn: Connection | None = None
        self._proc: Any = None
        self._sent: dict[str, Any] | None = None  # the table as the child has it; None: unknown

    def _start(self) -> Connection:
        if self._proc is not None:
            log.warning("pipeline process exited (code %s); starting a new one", self._proc.exitcode)
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_serve, args=(child, self.settings, self.changelog), name="lineage-pipeline", daemon=True
        )
        self._proc.start()
        child.close()
        self._conn = parent
        self._sent = None
        return parent

    def _delta(self, table: Mapping[str, Any]) -> TableDelta:
        sent = self._sent
        if sent is None:
            return True, dict(table), []
        changed = {k: v for k, v in table.items() if sent.get(k, _ABSENT) != v}
        return False, changed, [k for k in sent if k not in table]

    def call(self, msgs: list[RawMessage], table: Mapping[str, Any]) -> Reply:
        """Process one batch in the child (blocking: run it in a thread). Raises :class:`OffloadRetry`."""
        conn = self._conn if self._conn is not None and self._proc.is_alive() else self._start()
        try:
            conn.send((msgs, self._delta(table)))
            self._sent = dict(table)
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            self._conn = None
            self._sent = None
            raise OffloadRetry(f"pipeline process died ({type(exc).__name__}); restarting it") from None
        if status != "ok":
            raise OffloadRetry(str(payload))
        counters, updates = payload
        return counters, updates

    def close(self, timeout: float = 30.0) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
