"""ClickHouse sink: batches of consumed messages -> graph tables, hash-chained raw log, metrics, alerts,
and the hash-chained query audit log.

Exactly-once effect: the raw log row for (topic, partition, offset) is written after the rows
Python computed from it and acts as the commit marker. On start (and after any failed insert) the
chain heads are re-read from ClickHouse, so already-stored offsets are skipped; the derived
tables are ReplacingMergeTree keyed by event occurrence and every insert carries a
deduplication token made of its offset ranges. Offsets go to Kafka only after ``flush`` returned.

With the embedded engine the batch's records are written to one file first; ClickHouse parses
nodes and edges out of it on a second thread (and a second connection) while this one decodes,
hashes and stages the Python-built rows and inserts them and the raw log, the records again
read from that file (the engine releases the GIL). With a server, nodes and edges are parsed
from the raw log right after it is stored. Either way every insert of the batch has finished
before ``flush`` returns; should the nodes and edges fail after the raw log landed, the next
flush derives them from the raw log (``load_heads``).

Audit records are their own commit marker: a ``query_audit`` row per (topic, partition, offset),
chained like the raw log, its heads read back by ``load_heads`` and written to ``chain_heads``
with the raw log's. Between batches (``maintain``) rows past the audit retention are pruned.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import BatchResult, Message, Sink
from sinks.clickhouse import rows as R
from sinks.clickhouse.batch import BatchBuilder, Prepared, offset_ranges
from sinks.clickhouse.chain import ChainHeads
from sinks.clickhouse.checkpoints import CheckpointPublisher
from sinks.clickhouse.client import Store
from sinks.clickhouse.derive import derive_from_file, derive_from_log
from sinks.clickhouse.metrics import SinkMetrics
from sinks.clickhouse.records import RecordFile, insert_raw_log
from sinks.clickhouse.retention import prune_chain
from sinks.exceptions import SinkBackpressureError

if TYPE_CHECKING:
    from lineage.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between two prunes of the audit log (the first runs when the sink starts).
PRUNE_INTERVAL_S = 3600.0


class ClickHouseSink(Sink):
    """Writes graph, metrics, alerts and audit messages; which is which is decided by topic name.

    ``audit_retention``: how long ``query_audit`` rows are kept (None: for ever).
    """

    def __init__(
        self,
        store: Store,
        graph_topics: Iterable[str],
        metrics_topics: Iterable[str] = (),
        alerts_topics: Iterable[str] = (),
        metrics: SinkMetrics | None = None,
        audit_topics: Iterable[str] = (),
        audit_retention: timedelta | None = None,
        checkpoints: CheckpointPublisher | None = None,
    ) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self.graph_topics = set(graph_topics)
        self.metrics_topics = set(metrics_topics)
        self.alerts_topics = set(alerts_topics)
        self.audit_topics = set(audit_topics)
        self.audit_retention = audit_retention
        self.metrics = metrics or SinkMetrics()
        self._builder = BatchBuilder(
            store.stage_arrow, self.graph_topics, self.metrics_topics, self.alerts_topics, self.metrics,
            self.audit_topics,
        )
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-graph")
        self._parser_store: Store | None = None  # the parser thread's own connection (embedded)
        self._buffer: list[Message] = []
        self._heads = ChainHeads()
        self._heads_stale = True
        self._next_prune = 0.0  # monotonic time of the next prune (the first maintain call prunes)

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None,
                      checkpoints: CheckpointPublisher | None = None) -> ClickHouseSink:
        t = settings.topics
        store = store or Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
        return cls(store, [t.graph], [t.metrics], [t.alerts], audit_topics=[t.audit],
                   audit_retention=timedelta(days=settings.audit.retention_days), checkpoints=checkpoints)

    @property
    def topics(self) -> list[str]:
        return sorted(self.graph_topics | self.metrics_topics | self.alerts_topics | self.audit_topics)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, message: Message) -> None:
        self._buffer.append(message)

    def discard(self, partitions: set[tuple[str, int]]) -> None:
        self._buffer = [m for m in self._buffer if (m.topic, m.partition) not in partitions]
        self._heads.forget(partitions)
        self._heads_stale = True

    def finish(self) -> None:
        """A clean shutdown: sign and publish the heads written since the last checkpoint."""
        self._checkpoint(force=True)

    def _checkpoint(self, force: bool = False) -> None:
        """Publish a signed checkpoint if one is due (``force``: whenever heads moved); counted."""
        cp = self.checkpoints
        if cp is None:
            return
        if cp.publish() if force else cp.maybe_publish():
            self.metrics.checkpoints_published += 1
        elif cp.failures > self.metrics.checkpoint_failures:
            self.metrics.checkpoint_failures = cp.failures
            self.metrics.last_error = cp.last_error

    def close(self) -> None:
        self._parser.shutdown(wait=True)
        self.store.close()  # and its sibling, the parser's connection

    def load_heads(self) -> None:
        """Read the chain head of every partition from the chained logs themselves (raw log and
        audit log), and finish what a crash interrupted: graph rows not yet derived from stored
        raw-log rows, and ``chain_heads`` behind either log."""
        raw, audit = self._log_heads("raw_events"), self._log_heads("query_audit")
        done = {
            (str(t), int(p)): int(o)
            for t, p, o in self.store.query(
                "SELECT topic, kafka_partition, max(last_offset) FROM chain_heads GROUP BY topic, kafka_partition"
            ).rows
        }
        behind = {tp: head for tp, head in {**raw, **audit}.items() if head[0] > done.get(tp, -1)}
        # only raw-log rows have graph rows to derive (audit records are stored as they are)
        unfinished = [(t, p, done.get((t, p), -1) + 1, o) for (t, p), (o, _) in sorted(raw.items()) if (t, p) in behind]
        if unfinished:
            log.warning("deriving graph rows for %d partition range(s) stored before a crash", len(unfinished))
            derive_from_log(self.store, unfinished, token=None)
        if behind:
            self._insert_heads(behind)
        self._heads = ChainHeads({**raw, **audit})
        self._heads_stale = False

    def _log_heads(self, table: str) -> dict[tuple[str, int], tuple[int, str]]:
        """(last offset, its row_hash) per partition of a chained log."""
        res = self.store.query(
            f"SELECT topic, kafka_partition, max(kafka_offset), argMax(row_hash, kafka_offset) "
            f"FROM {table} GROUP BY topic, kafka_partition"
        )
        return {(str(t), int(p)): (int(o), str(h)) for t, p, o, h in res.rows}

    def maintain(self) -> None:
        """Publish a signed checkpoint when one is due; prune the audit log past its retention:
        when the sink starts, then at most hourly.

        A failed prune is logged and counted (``prune_failures``) and tried again an hour later;
        it never holds up the batches.
        """
        self._checkpoint()
        if self.audit_retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        try:
            result = prune_chain(self.store, datetime.now(timezone.utc) - self.audit_retention)
        except (ClickHouseError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.metrics.prune_failures += 1
            self.metrics.last_error = reason
            log.error("pruning query_audit failed (retried in %.0f s): %s", PRUNE_INTERVAL_S, reason)
            return
        self.metrics.audit_rows_pruned += result.deleted
        self.metrics.prune_failures += len(result.broken)

    def flush(self) -> BatchResult:
        if not self._buffer:
            return BatchResult({}, {})
        started = time.monotonic()
        try:
            if self._heads_stale:
                self.load_heads()
            result = self._write(self._buffer)
        except (ClickHouseError, OSError) as exc:
            self._heads_stale = True  # an insert may have landed: re-read before retrying
            self.metrics.insert_failures += 1
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.metrics.last_error = reason
            raise SinkBackpressureError(f"ClickHouse insert failed, batch kept for retry: {reason}") from exc
        self._buffer = []
        self.metrics.batches_written += 1
        self.metrics.add_rows(result.rows)
        self.metrics.replayed_skipped += result.skipped
        self.metrics.last_batch_seconds = time.monotonic() - started
        return result

    # -- the batch ---------------------------------------------------------------------

    def _write(self, batch: list[Message]) -> BatchResult:
        by_tp: dict[tuple[str, int], list[Message]] = defaultdict(list)
        for m in batch:
            by_tp[(m.topic, m.partition)].append(m)
        commit = {tp: max(m.offset for m in ms) + 1 for tp, ms in by_tp.items()}

        fresh: list[Message] = []
        prev: dict[tuple[str, int], str] = {}
        for (topic, partition), msgs in sorted(by_tp.items()):
            msgs.sort(key=lambda m: m.offset)
            last_offset, prev[(topic, partition)] = self._heads.get(topic, partition)
            # offsets at or below the head were stored before a crash or by a replay
            fresh.extend(m for m in msgs if m.offset > last_offset)
        skipped = len(batch) - len(fresh)

        ranges = offset_ranges(fresh)
        if not ranges:
            return BatchResult({}, commit, skipped)
        token = ",".join(f"{t}/{p}/{a}-{b}" for t, p, a, b in ranges)
        graph_ranges = [r for r in ranges if r[0] in self.graph_topics]
        records = None
        if graph_ranges and self.store.embedded:
            records = RecordFile([m.value for m in fresh if m.topic in self.graph_topics])
        try:
            prepared = self._store_batch(fresh, prev, records, token)
        finally:
            if records is not None:
                records.remove()
        if graph_ranges and records is None:
            derive_from_log(self.store, graph_ranges, token)  # a server parses the stored log
        if prepared.heads:
            self._insert_heads(prepared.heads)  # the batch is complete
            for (t, p), (o, h) in prepared.heads.items():
                self._heads.advance(t, p, o, h)
            if self.checkpoints is not None:  # stored and committed: sign it (coalesced)
                for chained in prepared.chained:
                    self.checkpoints.observe(*chained)
                self._checkpoint()
        return BatchResult(prepared.counts, commit, skipped)

    def _store_batch(
        self, fresh: list[Message], prev: dict[tuple[str, int], str], records: RecordFile | None, token: str
    ) -> Prepared:
        """Build and insert the Python rows and the raw log; meanwhile (embedded) the parser thread
        inserts the records' nodes and edges."""
        parsing = None
        if records is not None:
            if self._parser_store is None:
                self._parser_store = self.store.sibling()
            parsing = self._parser.submit(derive_from_file, self._parser_store, records, token)
        try:
            prepared = self._builder.build(fresh, prev, records_apart=records is not None)
            try:
                for staged in prepared.inserts:  # rows computed in Python: idempotent tables
                    self.store.insert_staged(staged, token=f"{staged.table}:{token}")
                # the raw log: from here on a replay of these offsets is skipped
                if prepared.raw is not None and records is not None:
                    insert_raw_log(self.store, prepared.raw, records, token=f"raw_events:{token}")
                elif prepared.raw is not None:
                    self.store.insert_staged(prepared.raw, token=f"raw_events:{token}")
                if prepared.audit is not None:  # its own commit marker, like the raw log
                    self.store.insert_staged(prepared.audit, token=f"query_audit:{token}")
            finally:
                prepared.discard()
        finally:
            if parsing is not None:
                wait([parsing])  # never leave an insert running behind a failure
        if parsing is not None:
            parsing.result()
        return prepared

    def _insert_heads(self, heads: dict[tuple[str, int], tuple[int, str]]) -> None:
        rows = R.TableRows(("topic", "kafka_partition", "last_offset", "row_hash"))
        for (t, p), (o, h) in sorted(heads.items()):
            rows.append(t, p, o, h)
        self.store.insert_arrow("chain_heads", rows.to_arrow())
