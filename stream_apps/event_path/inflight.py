"""Batches in flight: handed to processing, not yet committed, oldest first, at most
``worker.max_in_flight`` of them.

Completion is strictly in consumption order: batch k's table updates are applied and its offsets
committed only after every batch before it. A batch that was not processed (infrastructure
trouble, a dead processing child) is retried until it is, never skipped: every later batch in
flight comes back unprocessed too (:class:`~stream_apps.event_path.serving.BatchServer` chains
them on it), and all of them are submitted again, in order.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from stream_apps.event_path.batch import InMessageFields
from stream_apps.event_path.serving import Reply
from stream_apps.exceptions import BatchNotProcessed

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0

Updates = list[tuple[str, dict[str, Any]]]


class Processing(Protocol):
    """Where batches are processed: :class:`~stream_apps.event_path.child.ProcessingChild` or
    :class:`~stream_apps.event_path.serving.ProcessingThread`."""

    def submit(self, seq: int, after: int | None, acked: int, msgs: list[InMessageFields],
               table: Mapping[str, Any]) -> Future[Reply]: ...

    def applied(self, updates: Updates) -> None: ...

    def close(self) -> None: ...


class Stopped(Exception):
    """Shutdown while a batch waited for a retry; it and the batches after it stay uncommitted."""


@dataclass(slots=True)
class Batch:
    """One consumed batch in flight."""

    seq: int
    records: list[Any]  # as consumed (what a commit needs)
    fields: list[InMessageFields]  # as handed to processing
    future: Future[Reply] | None = None


class InFlight:
    """The bounded, ordered pipeline between consuming and committing (consumer thread only).

    ``snapshot`` reads the model-lineage table, ``apply`` writes a batch's updates to it and
    ``commit`` commits past a batch's records.
    """

    def __init__(
        self,
        processing: Processing,
        limit: int,
        snapshot: Callable[[], Mapping[str, Any]],
        apply: Callable[[Updates], None],
        commit: Callable[[list[Any]], None],
        stopping: threading.Event,
    ) -> None:
        self.processing = processing
        self.limit = limit
        self._snapshot = snapshot
        self._apply = apply
        self._commit = commit
        self._stopping = stopping
        self._pending: deque[Batch] = deque()
        self._next_seq = 0
        self._acked = -1  # the last batch whose updates the table holds
        self.totals: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, records: list[Any], fields: list[InMessageFields]) -> None:
        """Hand a consumed batch to processing; returns once fewer than ``limit`` are in flight."""
        batch = Batch(self._next_seq, records, fields)
        self._next_seq += 1
        self._send(batch)
        while len(self._pending) >= self.limit:
            self._complete_oldest(retry=True)

    def reap(self) -> None:
        """Commit the finished batches at the head of the pipeline (returns without waiting
        unless one of them needs a retry)."""
        while self._pending and self._future(self._pending[0]).done():
            self._complete_oldest(retry=True)

    def drain(self) -> None:
        """Complete and commit every batch in flight, retrying as long as it takes (raises
        :class:`Stopped` on shutdown)."""
        while self._pending:
            self._complete_oldest(retry=True)

    def settle(self) -> list[Batch]:
        """Complete and commit every batch in flight without retrying (a rebalance is waiting):
        after the first failure nothing more is committed and the batches left are returned,
        dropped, so whoever owns their partitions next re-processes them."""
        try:
            while self._pending:
                self._complete_oldest(retry=False)
        except BatchNotProcessed as exc:
            log.warning("batch not processed during a rebalance (%s); %d batches in flight left uncommitted",
                        exc, len(self._pending))
            return self.drop()
        return []

    def drop(self) -> list[Batch]:
        """Forget every batch in flight (uncommitted)."""
        dropped = list(self._pending)
        self._pending.clear()
        return dropped

    def _send(self, batch: Batch) -> None:
        after = self._pending[-1].seq if self._pending else None
        batch.future = self.processing.submit(batch.seq, after, self._acked, batch.fields, self._snapshot())
        self._pending.append(batch)

    @staticmethod
    def _future(batch: Batch) -> Future[Reply]:
        assert batch.future is not None
        return batch.future

    def _complete_oldest(self, retry: bool) -> None:
        delay = RETRY_FIRST_S
        while True:
            head = self._pending[0]
            try:
                counters, updates = self._future(head).result()
                break
            except BatchNotProcessed as exc:
                for later in list(self._pending)[1:]:
                    self._future(later).exception()  # wait: each comes back unprocessed
                if not retry:
                    raise
                # Infrastructure trouble (Redis, broker, the child): retried until it works, in order;
                # stopping here leaves the batches uncommitted, so the next owner re-processes them.
                log.warning("batch of %d not processed (%s); retrying %d batches in %.1fs",
                            len(head.fields), exc, len(self._pending), delay)
                if self._stopping.wait(delay):
                    raise Stopped from None
                delay = min(delay * 2, RETRY_MAX_S)
                again = self.drop()
                for batch in again:
                    self._send(batch)
        self._pending.popleft()
        if updates:
            self._apply(updates)
            self.processing.applied(updates)
        self._acked = head.seq
        self.totals.update(counters)
        self._commit(head.records)
