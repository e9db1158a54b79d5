"""The processing child: the batch processor and the output I/O in a process of their own, so the
consumer loop keeps its own core (``worker.processing = process``).

The consumer loop hands each batch (plain tuples: cheap to pickle) as a
:class:`~stream_apps.event_path.serving.Job` over a pipe, without waiting for the previous
batch's answer; a reader thread on each side keeps the pipe flowing both ways, the child works
through the jobs in order (:class:`~stream_apps.event_path.serving.BatchServer`): one thread
processes them, another delivers each processed batch and answers it, so a batch is processed
while the one before it is being acknowledged. A restarted child gets the whole table with its
first job. The child builds
:class:`~stream_apps.event_path.resources.ChildResources` when it starts; it is spawned (never
forked from a threaded process), ignores SIGINT/SIGTERM (the parent stops it after its last
batch) and exits when the parent goes away.
"""
from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from lineage.settings import Settings
from stream_apps.event_path.batch import InMessageFields
from stream_apps.event_path.resources import ChildResources
from stream_apps.event_path.serving import (
    Answer,
    BatchServer,
    Job,
    Prepared,
    Reply,
    TableCopy,
    TableFeed,
    resolve,
    tune_gc,
)
from stream_apps.exceptions import BatchNotProcessed

log = logging.getLogger(__name__)


def _serve(conn: Connection, settings: Settings, changelog: str) -> None:
    """The child's main loop: take the next job, process and deliver it, answer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    table = TableCopy()
    resources = ChildResources(settings, changelog, table.get)
    server = BatchServer(resources, table)
    tune_gc()
    inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()

    def receive() -> None:  # keeps the parent's sends from waiting on the batch being processed
        try:
            while (job := conn.recv()) is not None:
                inbox.put(job)
        except (EOFError, OSError):  # parent gone
            pass
        inbox.put(None)

    threading.Thread(target=receive, name="lineage-child-inbox", daemon=True).start()
    # Delivery in a thread of its own: the next batch is processed while the broker acknowledges
    # this one (the compiled steps release the interpreter lock; waiting for acks holds none).
    outbox: queue.SimpleQueue[Prepared | Answer | None] = queue.SimpleQueue()

    def deliver() -> None:
        while (prepared := outbox.get()) is not None:
            try:
                answer = server.complete(prepared)
            except Exception as exc:  # noqa: BLE001 - a bug: logged with its trace, the batch retried, never skipped
                log.exception("delivering a batch failed")
                server.fail_delivery()
                answer = "retry", f"{type(exc).__name__}: {exc}"
            try:
                conn.send(answer)
            except OSError:  # parent gone: its reader thread ends the child
                return

    delivery = threading.Thread(target=deliver, name="lineage-child-delivery")
    delivery.start()
    try:
        while (job := inbox.get()) is not None:
            outbox.put(server.prepare(job))
    finally:
        outbox.put(None)
        delivery.join()
        resources.close()


class ProcessingChild:
    """Parent side: one child per consumer loop; restarted (on the next submit) when it dies."""

    def __init__(self, settings: Settings, changelog: str) -> None:
        self.settings = settings
        self.changelog = changelog
        self._ctx = multiprocessing.get_context("spawn")
        self._feed = TableFeed()
        self._lock = threading.Lock()
        self._conn: Connection | None = None  # None: no child running
        self._proc: Any = None
        self._waiting: deque[Future[Reply]] = deque()  # answers due from the child, in job order
        self._last_ok: int | None = None  # the last job the child answered ``ok``

    def _start(self) -> Connection:
        if self._proc is not None:
            self._proc.join(5)
            log.warning("processing child exited (code %s); starting a new one", self._proc.exitcode)
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_serve, args=(child, self.settings, self.changelog), name="lineage-processing-child", daemon=True
        )
        self._proc.start()
        child.close()
        self._feed.reset()
        self._conn = parent
        threading.Thread(target=self._read, args=(parent,), name="lineage-child-answers", daemon=True).start()
        return parent

    def _read(self, conn: Connection) -> None:
        """Settle each waiting future with the child's answer; all of them when the child dies."""
        while True:
            try:
                answer = conn.recv()
            except (EOFError, OSError) as exc:
                with self._lock:
                    waiting, self._waiting = list(self._waiting), deque()
                    if self._conn is conn:
                        self._conn = None
                for future in waiting:
                    future.set_exception(BatchNotProcessed(f"processing child died ({type(exc).__name__}); restarting it"))
                return
            with self._lock:
                future = self._waiting.popleft()
            resolve(future, answer)

    def submit(self, seq: int, after: int | None, acked: int, msgs: list[InMessageFields],
               table: Mapping[str, Any]) -> Future[Reply]:
        """Hand one batch to the child (returns at once). The future raises
        :class:`~stream_apps.exceptions.BatchNotProcessed` when it was not processed."""
        future: Future[Reply] = Future()
        with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._start()
                if after is not None and after == self._last_ok:
                    after = None  # processed by the previous child: nothing pending before this job
            self._waiting.append(future)
        try:
            conn.send(Job(seq, after, acked, msgs, self._feed.delta(table)))
        except OSError:
            pass  # the child is gone: its reader settles the future
        future.add_done_callback(lambda f: self._answered(seq, f))
        return future

    def _answered(self, seq: int, future: Future[Reply]) -> None:
        if future.exception() is None:
            self._last_ok = seq

    def applied(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        self._feed.applied(updates)

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            conn = self._conn
        if conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
