"""The Python side of a ClickHouse sink batch: consumed messages -> staged inserts, one per table.

Graph records and audit records are hash-chained per partition (``chain.row_hash``) into the raw
log and ``query_audit``; metrics and alerts are not.

Runs while the engine parses the batch's nodes and edges, so it is written for speed: one
JSON decode per message, plain column lists, one Arrow table per target table, staged (for
the embedded engine: written to a file) before the engine is asked to insert it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from sinks.base import Message
from sinks.clickhouse import rows as R
from sinks.clickhouse.chain import GENESIS, row_hash
from sinks.clickhouse.client import StagedInsert
from sinks.clickhouse.derive import Range
from sinks.clickhouse.metrics import SinkMetrics

log = logging.getLogger(__name__)

#: Tables written from Python rows, in insert order. Each is idempotent on replay; the raw log
#: follows them and acts as the commit marker (a replay skips offsets already in it).
PYTHON_TABLES = ("inference_lineage", "training_runs", "pipeline_metrics", "alerts")


def offset_ranges(messages: Iterable[Message]) -> list[Range]:
    """(topic, partition, first, last offset) of each run of messages sorted by topic, partition, offset."""
    ranges: list[Range] = []
    for m in messages:
        if ranges and ranges[-1][0] == m.topic and ranges[-1][1] == m.partition:
            ranges[-1] = (m.topic, m.partition, ranges[-1][2], m.offset)
        else:
            ranges.append((m.topic, m.partition, m.offset, m.offset))
    return ranges


@dataclass
class Prepared:
    """Staged inserts of the Python-built tables (in insert order), of the raw log and of the
    audit log, row counts and the new chain heads (of both chained logs)."""

    inserts: list[StagedInsert]
    raw: StagedInsert | None
    counts: dict[str, int]
    heads: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)
    audit: StagedInsert | None = None
    #: (log, topics, partitions, offsets, row hashes) of the chained rows, for signed checkpoints
    chained: list[tuple[str, list[str], list[int], list[int], list[str]]] = field(default_factory=list)

    def discard(self) -> None:
        """Release the staged data (temporary files) once inserted or abandoned."""
        for staged in [*self.inserts, self.raw, self.audit]:
            if staged is not None:
                staged.discard()


class BatchBuilder:
    """Turns messages (sorted by topic, partition, offset; none already stored) into staged inserts."""

    def __init__(
        self,
        stage: Callable[[str, Any], StagedInsert],
        graph_topics: set[str],
        metrics_topics: set[str],
        alerts_topics: set[str],
        metrics: SinkMetrics,
        audit_topics: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.stage = stage
        self.graph_topics = graph_topics
        self.audit_topics = audit_topics
        self.json_topics: dict[str, tuple[str, Callable[[R.TableRows, Any], None]]] = {
            **{t: ("pipeline_metrics", R.metric_rows) for t in metrics_topics},
            **{t: ("alerts", R.alert_rows) for t in alerts_topics},
        }
        self.metrics = metrics

    def build(
        self, messages: Iterable[Message], prev: dict[tuple[str, int], str], records_apart: bool = False
    ) -> Prepared:
        """``prev`` holds each partition's chain head hash and is advanced in place.

        ``records_apart``: the records reach the engine in a RecordFile, so the raw log is staged
        without them and with ``n``, the graph message's position in ``messages``.
        """
        graph = R.GraphRows()
        json_rows = {"pipeline_metrics": R.TableRows(R.METRIC_COLUMNS), "alerts": R.TableRows(R.ALERT_COLUMNS)}
        raw = R.TableRows(R.RAW_COLUMNS)
        (topics, partitions, offsets, event_ids, kinds, event_types, times, correlation_ids,
         records, prev_hashes, row_hashes) = raw.data
        audit = R.TableRows(R.AUDIT_COLUMNS)
        heads: dict[tuple[str, int], tuple[int, str]] = {}
        n_edges = n_nodes = 0
        decode = R.decode
        for m in messages:
            topic, partition, offset = m.topic, m.partition, m.offset
            if topic not in self.graph_topics:
                if topic in self.audit_topics:
                    self._add_audit(audit, m, prev, heads)
                else:
                    self._add_json(json_rows, m)
                continue
            value = m.value
            before = prev.get((topic, partition), GENESIS)
            digest = row_hash(before, topic, partition, offset, value)
            prev[(topic, partition)] = digest
            heads[(topic, partition)] = (offset, digest)
            try:
                rec = decode(value)
                event_id, kind, event_time = str(rec["event_id"]), str(rec["kind"]), int(rec["event_time"])
                event_type, correlation_id = rec.get("event_type"), rec.get("correlation_id")
                if kind == "inference" or kind == "training":
                    R.add_record(graph, rec, with_graph=False)
                n_edges += len(rec.get("edges") or ())
                n_nodes += len(rec.get("nodes") or ())
            except (ValueError, KeyError, TypeError) as exc:
                # Kept in the raw log (never dropped), counted, and visible to `lineage verify`.
                self.metrics.decode_errors += 1
                log.error("undecodable graph record at %s/%d@%d: %s", topic, partition, offset, exc)
                event_id, kind, event_time, event_type, correlation_id = "", "undecodable", 0, "", ""
            topics.append(topic)
            partitions.append(partition)
            offsets.append(offset)
            event_ids.append(event_id)
            kinds.append(kind)
            event_types.append(str(event_type or ""))
            times.append(event_time)
            correlation_ids.append(str(correlation_id or ""))
            records.append(value)
            prev_hashes.append(before)
            row_hashes.append(digest)

        by_table = {"inference_lineage": graph.inference, "training_runs": graph.training, **json_rows}
        inserts: list[StagedInsert] = []
        raw_staged = audit_staged = None
        try:
            for name in PYTHON_TABLES:
                if len(by_table[name]):
                    inserts.append(self.stage(name, by_table[name].to_arrow()))
            if len(raw):
                if records_apart:
                    table = raw.to_arrow(exclude=("record",))
                    table = table.append_column("n", pa.array(range(len(raw)), type=pa.uint32()))
                else:
                    table = raw.to_arrow()
                raw_staged = self.stage("raw_events", table)
            if len(audit):
                audit_staged = self.stage("query_audit", audit.to_arrow())
        except BaseException:
            for staged in [*inserts, raw_staged]:
                if staged is not None:
                    staged.discard()
            raise
        counts = {s.table: s.rows for s in inserts}
        for staged in (raw_staged, audit_staged):
            if staged is not None:
                counts[staged.table] = staged.rows
        counts.update({k: v for k, v in (("edges", n_edges), ("nodes", n_nodes)) if v})
        chained = [("raw_events", topics, partitions, offsets, row_hashes),
                   ("query_audit", audit.data[0], audit.data[1], audit.data[2], audit.data[5])]
        return Prepared(inserts, raw_staged, counts, heads, audit_staged, [c for c in chained if c[3]])

    @staticmethod
    def _add_audit(
        out: R.TableRows, m: Message, prev: dict[tuple[str, int], str], heads: dict[tuple[str, int], tuple[int, str]]
    ) -> None:
        """Chain one audit record as consumed. Its bytes are stored whatever they hold: an
        undecodable record is kept (its readable columns are empty) and `lineage verify` covers it."""
        key = (m.topic, m.partition)
        before = prev.get(key, GENESIS)
        digest = row_hash(before, m.topic, m.partition, m.offset, m.value)
        prev[key] = digest
        heads[key] = (m.offset, digest)
        out.append(m.topic, m.partition, m.offset, m.value, before, digest)

    def _add_json(self, out: dict[str, R.TableRows], m: Message) -> None:
        table, fn = self.json_topics[m.topic]
        try:
            data = orjson.loads(m.value)
            for item in data if isinstance(data, list) else [data]:
                fn(out[table], item)
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.decode_errors += 1
            log.error("undecodable record at %s/%d@%d: %s", m.topic, m.partition, m.offset, exc)
