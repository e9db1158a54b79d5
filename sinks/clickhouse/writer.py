"""ClickHouse sink: batches of consumed messages -> graph tables, hash-chained raw log, metrics, alerts.

Exactly-once effect: the raw log row for (topic, partition, offset) is written last in each
batch and acts as the commit marker. On start (and after any failed insert) the chain heads
are re-read from ClickHouse, so already-stored offsets are skipped; the derived tables are
ReplacingMergeTree keyed by event occurrence and every insert carries a deduplication token
made of the batch's offset ranges. Offsets go to Kafka only after ``flush`` returned.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import BatchResult, Message, Sink
from sinks.clickhouse import rows as R
from sinks.clickhouse.chain import ChainHeads, row_hash
from sinks.clickhouse.client import Store
from sinks.clickhouse.metrics import SinkMetrics
from sinks.exceptions import SinkBackpressureError

if TYPE_CHECKING:
    from lineage.settings import Settings

log = logging.getLogger(__name__)

# Nodes and edges are parsed out of the stored records by ClickHouse (C++ JSON parsing is an
# order of magnitude faster than building the rows in Python), so they are also rebuildable
# from the raw log at any time.
DERIVE_EDGES = """
INSERT INTO edges (src, dst, edge_type, run_id, event_id, event_time)
SELECT e.src, e.dst, e.edge_type, e.run_id, event_id, event_time
FROM raw_events
ARRAY JOIN JSONExtract(record, 'edges', 'Array(Tuple(src String, dst String, edge_type String, run_id String))') AS e
WHERE {where}
"""
DERIVE_NODES = """
INSERT INTO nodes (node_id, node_type, namespace, name, version, attributes, event_id, event_time)
SELECT n.node_id, n.node_type, n.namespace, n.name, n.version, n.attributes, event_id, event_time
FROM raw_events
ARRAY JOIN JSONExtract(record, 'nodes', 'Array(Tuple(node_id String, node_type String, namespace String, name String,
                                               version String, attributes Map(String, String)))') AS n
WHERE {where}
"""


class ClickHouseSink(Sink):
    """Writes graph, metrics and alerts messages; which is which is decided by topic name."""

    def __init__(
        self,
        store: Store,
        graph_topics: Iterable[str],
        metrics_topics: Iterable[str] = (),
        alerts_topics: Iterable[str] = (),
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.store = store
        self.graph_topics = set(graph_topics)
        self.metrics_topics = set(metrics_topics)
        self.alerts_topics = set(alerts_topics)
        self.metrics = metrics or SinkMetrics()
        self._buffer: list[Message] = []
        self._heads = ChainHeads()
        self._heads_stale = True
        self._graph_counts: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None) -> ClickHouseSink:
        t = settings.topics
        store = store or Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
        return cls(store, [t.graph], [t.metrics], [t.alerts])

    @property
    def topics(self) -> list[str]:
        return sorted(self.graph_topics | self.metrics_topics | self.alerts_topics)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, message: Message) -> None:
        self._buffer.append(message)

    def discard(self, partitions: set[tuple[str, int]]) -> None:
        self._buffer = [m for m in self._buffer if (m.topic, m.partition) not in partitions]
        self._heads.forget(partitions)
        self._heads_stale = True

    def close(self) -> None:
        self.store.close()

    def load_heads(self) -> None:
        """Read the chain head of every partition from the raw log itself, and finish any batch
        whose raw rows landed but whose graph rows were not derived yet (crash in between)."""
        res = self.store.query(
            "SELECT topic, kafka_partition, max(kafka_offset), argMax(row_hash, kafka_offset) "
            "FROM raw_events GROUP BY topic, kafka_partition"
        )
        heads = {(str(t), int(p)): (int(o), str(h)) for t, p, o, h in res.rows}
        done = {
            (str(t), int(p)): int(o)
            for t, p, o in self.store.query(
                "SELECT topic, kafka_partition, max(last_offset) FROM chain_heads GROUP BY topic, kafka_partition"
            ).rows
        }
        unfinished = [
            (t, p, done.get((t, p), -1) + 1, o) for (t, p), (o, _) in sorted(heads.items()) if o > done.get((t, p), -1)
        ]
        if unfinished:
            log.warning("deriving graph rows for %d partition range(s) stored before a crash", len(unfinished))
            self._derive(unfinished, token=None)
            self._insert_heads({(t, p): heads[(t, p)] for t, p, _, _ in unfinished})
        self._heads = ChainHeads(heads)
        self._heads_stale = False

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

        graph = R.GraphRows()
        self._graph_counts = {"edges": 0, "nodes": 0}
        raw = R.TableRows(R.RAW_COLUMNS)
        metric_rows = R.TableRows(R.METRIC_COLUMNS)
        alert_rows = R.TableRows(R.ALERT_COLUMNS)
        new_heads: dict[tuple[str, int], tuple[int, str]] = {}
        ranges: list[tuple[str, int, int, int]] = []
        skipped = 0

        for (topic, partition), msgs in sorted(by_tp.items()):
            msgs.sort(key=lambda m: m.offset)
            last_offset, prev = self._heads.get(topic, partition)
            first = None
            for m in msgs:
                if m.offset <= last_offset:  # stored before a crash or by a replay
                    skipped += 1
                    continue
                first = m.offset if first is None else first
                if topic in self.graph_topics:
                    prev = self._add_graph(graph, raw, m, prev)
                elif topic in self.metrics_topics:
                    self._add_json(metric_rows, m, R.metric_rows)
                elif topic in self.alerts_topics:
                    self._add_json(alert_rows, m, R.alert_rows)
                last_offset = m.offset
            if first is not None:
                ranges.append((topic, partition, first, last_offset))
                if topic in self.graph_topics:
                    new_heads[(topic, partition)] = (last_offset, prev)

        written: dict[str, int] = {}
        if ranges:
            token = ",".join(f"{t}/{p}/{a}-{b}" for t, p, a, b in ranges)
            # 1. rows computed in Python (inference, training, metrics, alerts): idempotent tables
            for table, rows in (("inference_lineage", graph.inference), ("training_runs", graph.training),
                                ("pipeline_metrics", metric_rows), ("alerts", alert_rows)):
                if len(rows):
                    self.store.insert_arrow(table, rows.to_arrow(), token=f"{table}:{token}")
                    written[table] = len(rows)
            if len(raw):
                # 2. the raw log: from here on a replay of these offsets is skipped
                self.store.insert_arrow("raw_events", raw.to_arrow(), token=f"raw_events:{token}")
                written["raw_events"] = len(raw)
                # 3. nodes and edges, parsed from the stored records by ClickHouse itself
                graph_ranges = [r for r in ranges if r[0] in self.graph_topics]
                self._derive(graph_ranges, token)
                written.update({k: v for k, v in self._graph_counts.items() if v})
                # 4. the batch is complete
                self._insert_heads(new_heads)
            for (t, p), (o, h) in new_heads.items():
                self._heads.advance(t, p, o, h)
        return BatchResult(written, commit, skipped)

    def _insert_heads(self, heads: dict[tuple[str, int], tuple[int, str]]) -> None:
        rows = R.TableRows(("topic", "kafka_partition", "last_offset", "row_hash"))
        for (t, p), (o, h) in sorted(heads.items()):
            rows.append(t, p, o, h)
        self.store.insert_arrow("chain_heads", rows.to_arrow())

    def _derive(self, ranges: list[tuple[str, int, int, int]], token: str | None) -> None:
        """INSERT ... SELECT the nodes and edges of the given raw-log offset ranges."""
        if not ranges:
            return
        params: dict[str, Any] = {}
        conds = []
        for i, (t, p, a, b) in enumerate(ranges):
            params[f"t{i}"] = t
            conds.append(f"(topic = {{t{i}:String}} AND kafka_partition = {int(p)} AND kafka_offset BETWEEN {int(a)} AND {int(b)})")
        where = " OR ".join(conds)
        for table, sql in (("edges", DERIVE_EDGES), ("nodes", DERIVE_NODES)):
            settings: dict[str, Any] = {"max_insert_threads": 2, "optimize_on_insert": 0}
            if token:
                settings["insert_deduplication_token"] = f"{table}:{token}"
            self.store.command(sql.format(where=where), params, settings)

    def _add_graph(self, graph: R.GraphRows, raw: R.TableRows, m: Message, prev: str) -> str:
        digest = row_hash(prev, m.topic, m.partition, m.offset, m.value)
        try:
            rec = R.decode(m.value)
            R.add_record(graph, rec, with_graph=False)
            self._graph_counts["edges"] += len(rec.get("edges") or ())
            self._graph_counts["nodes"] += len(rec.get("nodes") or ())
            raw.append(
                m.topic, m.partition, m.offset, str(rec["event_id"]), str(rec["kind"]),
                str(rec.get("event_type") or ""), int(rec["event_time"]), str(rec.get("correlation_id") or ""),
                m.value, prev, digest,
            )
        except (ValueError, KeyError, TypeError) as exc:
            # Kept in the raw log (never dropped), counted, and visible to `lineage verify`.
            self.metrics.decode_errors += 1
            log.error("undecodable graph record at %s/%d@%d: %s", m.topic, m.partition, m.offset, exc)
            raw.append(
                m.topic, m.partition, m.offset, "", "undecodable", "", 0, "",
                m.value, prev, digest,
            )
        return digest

    def _add_json(self, out: R.TableRows, m: Message, fn: Any) -> None:
        try:
            data = orjson.loads(m.value)
            for item in data if isinstance(data, list) else [data]:
                fn(out, item)
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.decode_errors += 1
            log.error("undecodable record at %s/%d@%d: %s", m.topic, m.partition, m.offset, exc)
