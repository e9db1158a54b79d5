"""The processing child: the batch processor and the output I/O in a process of their own, so the
consumer loop keeps its own core.

The consumer loop (parent) hands each batch (plain tuples: cheap to pickle) plus the changes of
the model-lineage table since the previous batch to the child, waits for the child's answer and
only then commits. A restarted child gets the whole table with its first batch. The child builds
:class:`~stream_apps.event_path.resources.ChildResources` when it starts; it is spawned (never
forked from a threaded process), ignores SIGINT/SIGTERM (the parent stops it after its last
batch) and exits when the parent goes away.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from lineage.settings import Settings
from stream_apps.event_path.batch import INFRA_ERRORS, InMessage, InMessageFields
from stream_apps.event_path.resources import ChildResources
from stream_apps.exceptions import BatchNotProcessed

log = logging.getLogger(__name__)
#: The child's answer: the batch's counters and its model-lineage table updates.
Reply = tuple[dict[str, int], list[tuple[str, dict[str, Any]]]]
#: Table changes since the previous batch: (whole table?, changed entries, removed keys).
TableDelta = tuple[bool, dict[str, Any], list[str]]

_ABSENT = object()


def _serve(conn: Connection, settings: Settings, changelog: str) -> None:
    """The child's main loop: receive a batch, process it, deliver it, answer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lineage: dict[str, Any] = {}
    resources = ChildResources(settings, changelog, lineage.get)
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
                result = resources.processor.process(msgs)
                resources.deliver(result)
            except INFRA_ERRORS as exc:
                conn.send(("retry", f"{type(exc).__name__}: {exc}"))
                continue
            conn.send(("ok", (dict(result.counters), result.table_updates)))
    finally:
        resources.close()


class ProcessingChild:
    """Parent side: one child per consumer loop; restarted when it dies."""

    def __init__(self, settings: Settings, changelog: str) -> None:
        self.settings = settings
        self.changelog = changelog
        self._ctx = multiprocessing.get_context("spawn")
        self._conn: Connection | None = None
        self._proc: Any = None
        self._sent: dict[str, Any] | None = None  # the table as the child has it; None: unknown

    def _start(self) -> Connection:
        if self._proc is not None:
            log.warning("processing child exited (code %s); starting a new one", self._proc.exitcode)
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_serve, args=(child, self.settings, self.changelog), name="lineage-processing-child", daemon=True
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

    def process(self, msgs: list[InMessageFields], table: Mapping[str, Any]) -> Reply:
        """Process one batch in the child (blocking). Raises :class:`~stream_apps.exceptions.BatchNotProcessed`."""
        conn = self._conn if self._conn is not None and self._proc.is_alive() else self._start()
        try:
            conn.send((msgs, self._delta(table)))
            self._sent = dict(table)
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            self._conn = None
            self._sent = None
            raise BatchNotProcessed(f"processing child died ({type(exc).__name__}); restarting it") from None
        if status != "ok":
            raise BatchNotProcessed(str(payload))
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
