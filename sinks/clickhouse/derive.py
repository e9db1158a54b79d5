"""Nodes and edges parsed out of graph records by ClickHouse itself.

C++ JSON parsing is an order of magnitude faster than building these rows in Python
(``rows.add_record`` is the reference mapping the tests compare this SQL against). The same
parse reads either the stored raw log (a range of offsets: recovery, and a ClickHouse server)
or, with the embedded engine, the batch's :class:`~sinks.clickhouse.records.RecordFile`,
written before the Python work on the batch starts, so the engine parses while Python decodes
and hashes.

An edge carries the version of each endpoint as the record that asserted it states it: the
first node of the record with the endpoint's id ('' when the record has none).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sinks.clickhouse.client import settings_sql, sql_string
from sinks.clickhouse.rows import EDGE_COLUMNS, NODE_COLUMNS

if TYPE_CHECKING:
    from sinks.clickhouse.client import Store
    from sinks.clickhouse.records import RecordFile

#: (topic, partition, first offset, last offset) of raw-log rows
Range = tuple[str, int, int, int]

_EDGES = """
SELECT e.src, e.dst, e.edge_type, e.run_id,
       node_versions[indexOf(node_ids, e.src)], node_versions[indexOf(node_ids, e.dst)],
       g.event_id, fromUnixTimestamp64Micro(g.event_time, 'UTC')
FROM
(
    SELECT JSONExtract(record, 'Tuple(event_id String, event_time Int64,
                                      edges Array(Tuple(src String, dst String, edge_type String, run_id String)),
                                      nodes Array(Tuple(node_id String, version String)))') AS g,
           arrayMap(n -> n.node_id, g.nodes) AS node_ids,
           arrayMap(n -> n.version, g.nodes) AS node_versions
    FROM {source}
)
ARRAY JOIN g.edges AS e
"""

_NODES = """
SELECT n.node_id, n.node_type, n.namespace, n.name, n.version, n.attributes,
       g.event_id, fromUnixTimestamp64Micro(g.event_time, 'UTC')
FROM
(
    SELECT JSONExtract(record, 'Tuple(event_id String, event_time Int64,
                                      nodes Array(Tuple(node_id String, node_type String, namespace String,
                                                        name String, version String, attributes Map(String, String))))') AS g
    FROM {source}
)
ARRAY JOIN g.nodes AS n
"""

_COLUMN_EDGES = """
SELECT c.src, c.src_column, c.dst, c.dst_column, c.transformation_type, c.subtype, c.description,
       c.masking, c.dataset_wide, c.run_id, g.event_id, fromUnixTimestamp64Micro(g.event_time, 'UTC')
FROM
(
    SELECT JSONExtract(record, 'Tuple(event_id String, event_time Int64,
                                      column_edges Array(Tuple(src String, src_column String, dst String,
                                                               dst_column String, transformation_type String,
                                                               subtype String, description String, masking UInt8,
                                                               dataset_wide UInt8, run_id String)))') AS g
    FROM {source}
)
ARRAY JOIN g.column_edges AS c
"""
COLUMN_EDGE_COLUMNS = ("src", "src_column", "dst", "dst_column", "transformation_type", "subtype", "description",
                       "masking", "dataset_wide", "run_id", "event_id", "event_time")

_TARGETS = (("edges", EDGE_COLUMNS, _EDGES), ("nodes", NODE_COLUMNS, _NODES),
            ("column_edges", COLUMN_EDGE_COLUMNS, _COLUMN_EDGES))


def range_filter(ranges: Sequence[Range]) -> str:
    """A WHERE condition selecting exactly these raw-log rows (served by the ordering key)."""
    return " OR ".join(
        f"(topic = {sql_string(t)} AND kafka_partition = {int(p)} AND kafka_offset BETWEEN {int(a)} AND {int(b)})"
        for t, p, a, b in ranges
    )


def _insert(store: Store, source: str, token: str | None) -> None:
    for table, columns, select in _TARGETS:
        settings: dict[str, Any] = {"max_insert_threads": 2, "optimize_on_insert": 0}
        if token:
            settings["insert_deduplication_token"] = f"{table}:{token}"
        store.command(f"INSERT INTO {table} ({', '.join(columns)}){select.format(source=source)}{settings_sql(settings)}")


def derive_from_log(store: Store, ranges: Sequence[Range], token: str | None) -> None:
    """Insert the edges and nodes of the given raw-log offset ranges.

    ``token`` (the offset ranges) makes a retried insert a no-op; without one (recovery after a
    crash) duplicates are possible and collapse in the ReplacingMergeTree tables.
    """
    if ranges:
        _insert(store, f"raw_events WHERE {range_filter(ranges)}", token)


def derive_from_file(store: Store, records: RecordFile, token: str | None) -> None:
    """Insert the edges and nodes of the records in a :class:`~sinks.clickhouse.records.RecordFile`."""
    _insert(store, records.source, token)
