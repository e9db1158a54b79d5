"""The processing side of the event path, whichever way it runs (a spawned child, :mod:`.child`,
or a thread of the worker, :class:`ProcessingThread`): the batch processor and the output I/O
fed one :class:`Job` at a time, in order.

Two things make batches in flight safe:

* Order after a failure. A job names the batch that must have been processed before it
  (``after``); when that one failed, the job is answered ``skipped`` without being touched, so
  nothing overtakes a failed batch. The consumer loop re-submits the failed batch and the
  skipped ones, in their order.
* The model-lineage table. The consumer side sends the table's changes since its previous job
  (:class:`TableFeed`); the processing side applies each batch's own updates to its copy
  (:class:`TableCopy`) before the next batch, so batch k+1 sees batch k's training lineage
  even though the consumer side has not applied it yet. A change sent before the consumer side
  knew of such an own update does not undo it (it would be overwritten by that update anyway).
"""
from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

from lineage.settings import Settings
from stream_apps.event_path.batch import INFRA_ERRORS, BatchResult, InMessage, InMessageFields
from stream_apps.exceptions import BatchNotProcessed

log = logging.getLogger(__name__)

#: A processed batch: its counters and its model-lineage table updates.
Reply = tuple[dict[str, int], list[tuple[str, dict[str, Any]]]]
#: Table changes since the previous job: (whole table?, changed entries, removed keys).
TableDelta = tuple[bool, dict[str, Any], list[str]]
#: What the processing side answers a job: ("ok", Reply), ("retry", why) or ("skipped", why).
Answer = tuple[str, Any]

_ABSENT = object()


def tune_gc() -> None:
    """Collect cycles rarely while batches are processed: a batch makes tens of thousands of
    short-lived, acyclic objects (message tuples, output records), and at the default threshold
    the collector walks the whole heap several times per batch (measured: 18,000 -> 30,000
    events/s through the batch processor). Objects alive now (modules, the resources) are frozen
    out of the collector's walks."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Job(NamedTuple):
    """One batch as it goes to the processing side (a plain tuple: cheap to pickle)."""

    seq: int  # the batch's number in consumption order
    after: int | None  # the batch that must have been processed first; None: nothing before it is pending
    acked: int  # the last batch whose table updates ``delta`` already reflects
    msgs: list[InMessageFields]
    delta: TableDelta


class TableFeed:
    """Consumer side: what the processing side's table copy holds, to send only the changes."""

    def __init__(self) -> None:
        self._sent: dict[str, Any] | None = None  # None: unknown (a fresh processing side)

    def delta(self, table: Mapping[str, Any]) -> TableDelta:
        sent = self._sent
        self._sent = dict(table)
        if sent is None:
            return True, dict(table), []
        changed = {k: v for k, v in table.items() if sent.get(k, _ABSENT) != v}
        return False, changed, [k for k in sent if k not in table]

    def applied(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        """A processed batch's updates, which the processing side's copy already holds."""
        if self._sent is not None:
            self._sent.update(updates)

    def reset(self) -> None:
        """The processing side starts afresh: the next job carries the whole table."""
        self._sent = None


class TableCopy:
    """Processing side: the model-lineage table as the batch processor reads it.

    A processed batch's updates are *staged* until it is delivered: the batches after it read
    them, but only a delivered batch's updates join the copy (:meth:`record`). When a delivery
    fails, every staged update goes (:meth:`fail`): the batches that read them are answered
    ``skipped`` and processed again, and none of a failed batch's updates outlives it. Until a new
    chain of jobs starts (a job naming no batch before it, sent only once every earlier job was
    answered) nothing more is staged. Used from the processing and the delivery thread.
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self._own: dict[str, int] = {}  # key -> the batch whose update wrote it
        self._staged: dict[int, dict[str, Any]] = {}  # batch -> its updates, oldest batch first
        self._broken = False  # a delivery failed since the current chain of jobs started
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            for updates in reversed(self._staged.values()):
                if key in updates:
                    return updates[key]
            return self.data.get(key)

    def receive(self, delta: TableDelta, acked: int) -> None:
        """Apply the consumer side's changes; own updates of batches after ``acked`` are kept."""
        full, changed, removed = delta
        with self._lock:
            self._own = {k: s for k, s in self._own.items() if s > acked}
            mine = {k: self.data[k] for k in self._own if k in self.data}
            if full:
                self.data.clear()
            self.data.update(changed)
            for key in removed:
                self.data.pop(key, None)
            self.data.update(mine)

    def new_chain(self) -> None:
        """A job naming no batch before it: every earlier job was answered."""
        with self._lock:
            self._broken = False

    def broken(self) -> bool:
        with self._lock:
            return self._broken

    def stage(self, seq: int, updates: Sequence[tuple[str, Any]]) -> None:
        """A processed batch's updates, read by the batches after it until it is delivered."""
        if not updates:
            return
        with self._lock:
            if not self._broken:  # else the batch is chained on a failed one: it will be skipped
                self._staged[seq] = dict(updates)

    def record(self, seq: int, updates: Sequence[tuple[str, Any]]) -> None:
        """A delivered batch's updates join the copy."""
        with self._lock:
            self._staged.pop(seq, None)
            for key, value in updates:
                self.data[key] = value
                self._own[key] = seq

    def unstage(self, seq: int) -> None:
        """A processed batch that is not delivered (skipped)."""
        with self._lock:
            self._staged.pop(seq, None)

    def fail(self) -> None:
        """A delivery failed: every batch staged now is it or chained on it."""
        with self._lock:
            self._staged.clear()
            self._broken = True


def _skipped(job: Job) -> Answer:
    return "skipped", f"batch {job.after} before it was not processed"


class Prepared(NamedTuple):
    """A processed job waiting for its delivery (:meth:`BatchServer.complete`)."""

    job: Job
    result: BatchResult


class BatchServer:
    """Processing side: jobs in order; a failed batch stops every job chained on it.

    A job goes through two halves: :meth:`prepare` processes it, :meth:`complete` delivers it and
    makes the answer. :meth:`handle` runs both in turn; the processing child runs them in two
    threads, so the next batch is processed while the broker acknowledges the one before it.
    Each half keeps its own chain: a job is not processed when the job it names (``after``)
    failed to process or a delivery failed since its chain started, and not delivered (answered
    ``skipped``, its result dropped) when the job it names failed to deliver. The batches after a
    processed one read its model-lineage updates (:meth:`TableCopy.stage`) before it is delivered.
    """

    def __init__(self, resources: Any, table: TableCopy, last_ok: int | None = None) -> None:
        self.resources = resources
        self.table = table
        self._last_ok = last_ok  # the last job delivered (delivery half)
        self._last_processed = last_ok  # the last job processed (processing half)

    def handle(self, job: Job) -> Answer:
        """Both halves in turn: a job chained on one that failed is not even processed."""
        if job.after is not None and job.after != self._last_ok:
            self.table.receive(job.delta, job.acked)
            return _skipped(job)
        return self.complete(self.prepare(job))

    def prepare(self, job: Job) -> Prepared | Answer:
        """Process ``job`` (the processing half); an answer instead when it is not processed."""
        self.table.receive(job.delta, job.acked)
        if job.after is None:
            self.table.new_chain()
        elif job.after != self._last_processed or self.table.broken():
            return _skipped(job)
        self._last_processed = None
        try:
            result = self.resources.processor.process([InMessage(*m) for m in job.msgs])
        except INFRA_ERRORS as exc:
            return "retry", f"{type(exc).__name__}: {exc}"
        self.table.stage(job.seq, result.table_updates)
        self._last_processed = job.seq
        return Prepared(job, result)

    def complete(self, prepared: Prepared | Answer) -> Answer:
        """Deliver a processed job and answer it (the delivery half), in job order."""
        if not isinstance(prepared, Prepared):
            if prepared[0] != "skipped":  # it failed to process
                self._last_ok = None
            return prepared
        job, result = prepared
        if job.after is not None and job.after != self._last_ok:
            self.table.unstage(job.seq)
            return _skipped(job)
        self._last_ok = None
        try:
            self.resources.deliver(result)
        except INFRA_ERRORS as exc:
            self.table.fail()
            return "retry", f"{type(exc).__name__}: {exc}"
        self.table.record(job.seq, result.table_updates)
        self._last_ok = job.seq
        return "ok", (dict(result.counters), result.table_updates)

    def fail_delivery(self) -> None:
        """A delivery ended in an unexpected error: nothing chained on it is delivered."""
        self.table.fail()
        self._last_ok = None


def resolve(future: Future[Reply], answer: Answer) -> None:
    """Settle ``future`` with the processing side's answer."""
    status, payload = answer
    if status == "ok":
        future.set_result(payload)
    else:
        future.set_exception(BatchNotProcessed(str(payload)))


class ProcessingThread:
    """The processing side in a thread of the worker process: no pickling, no second process.

    Pays off when the per-event work releases the interpreter lock; otherwise it competes with
    the consumer thread for it.
    """

    def __init__(self, settings: Settings, changelog: str, build: Callable[[Settings, str, Callable[[str], Any]], Any]) -> None:
        self.settings = settings
        self.changelog = changelog
        self._build = build
        self._feed = TableFeed()
        self._inbox: queue.SimpleQueue[tuple[Job, Future[Reply]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="lineage-processing", daemon=True)
        self._thread.start()

    def submit(self, seq: int, after: int | None, acked: int, msgs: list[InMessageFields],
               table: Mapping[str, Any]) -> Future[Reply]:
        future: Future[Reply] = Future()
        self._inbox.put((Job(seq, after, acked, msgs, self._feed.delta(table)), future))
        return future

    def applied(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        self._feed.applied(updates)

    def _serve(self) -> None:
        table = TableCopy()
        server: BatchServer | None = None
        try:
            while (item := self._inbox.get()) is not None:
                job, future = item
                if server is None:
                    try:
                        server = BatchServer(self._build(self.settings, self.changelog, table.get), table)
                        tune_gc()
                    except Exception as exc:  # noqa: BLE001 - Redis, the broker, a key: retried like a batch
                        log.warning("processing resources not built (%s: %s)", type(exc).__name__, exc)
                        table.receive(job.delta, job.acked)
                        resolve(future, ("retry", f"{type(exc).__name__}: {exc}"))
                        continue
                try:
                    answer = server.handle(job)
                except Exception as exc:  # noqa: BLE001 - a bug: logged with its trace, the batch retried, never skipped
                    log.exception("processing a batch failed")
                    answer = "retry", f"{type(exc).__name__}: {exc}"
                resolve(future, answer)
        finally:
            if server is not None:
                server.resources.close()

    def close(self, timeout: float = 30.0) -> None:
        self._inbox.put(None)
        self._thread.join(timeout)
