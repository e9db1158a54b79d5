"""Retention of a hash-chained log (``query_audit``): drop its oldest rows, keep it verifiable.

Rows go from the front of each chain only, up to the first row at or after the cutoff; the newest
row is always kept, because the chain (and the sink's replay check, ``load_heads``) continues from
it. Before they go, ``chain_starts`` records the first kept offset and its prev_hash, and
`lineage verify` walks the chain from there. A chain with a break between its recorded start and
the new one is not pruned: the evidence stays until someone looks (``lineage verify`` shows it).
A prune cut short between the two steps leaves rows below the recorded start; verify skips them
and the next prune deletes them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sinks.clickhouse import rows as R

if TYPE_CHECKING:
    from sinks.clickhouse.client import Store

log = logging.getLogger(__name__)

#: Per chain, the first row to keep (the first one at or after the cutoff, else the newest), its
#: position in the chain since the recorded start (n), and how many rows up to and including it
#: fail their hash or their link (breaks).
_FRONT = """
WITH starts AS
(
    SELECT topic, kafka_partition, max(c.first_offset) AS start_offset, argMax(c.prev_hash, c.first_offset) AS start_hash
    FROM chain_starts AS c GROUP BY topic, kafka_partition
)
SELECT topic, kafka_partition, kafka_offset, prev_hash, n, breaks
FROM
(
    SELECT topic, kafka_partition, kafka_offset, prev_hash, recent, n, last_offset,
           sum(broken) OVER (PARTITION BY topic, kafka_partition ORDER BY kafka_offset ASC
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS breaks
    FROM
    (
        SELECT q.topic AS topic, q.kafka_partition AS kafka_partition, q.kafka_offset AS kafka_offset,
               q.prev_hash AS prev_hash, q.ts >= {{cutoff:DateTime64(3, 'UTC')}} AS recent,
               row_number() OVER w AS n,
               max(q.kafka_offset) OVER (PARTITION BY q.topic, q.kafka_partition) AS last_offset,
               toUInt64(lower(hex(SHA256(concat(q.prev_hash, '\\n', q.topic, '\\n', toString(q.kafka_partition), '\\n',
                                                toString(q.kafka_offset), '\\n', q.record)))) != q.row_hash
                        OR q.prev_hash != lagInFrame(q.row_hash, 1, ifNull(nullIf(s.start_hash, ''), repeat('0', 64))) OVER w)
                   AS broken
        FROM {table} AS q
        LEFT JOIN starts AS s ON s.topic = q.topic AND s.kafka_partition = q.kafka_partition
        WHERE q.kafka_offset >= ifNull(s.start_offset, 0)
        WINDOW w AS (PARTITION BY q.topic, q.kafka_partition ORDER BY q.kafka_offset ASC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
)
WHERE recent OR kafka_offset = last_offset
ORDER BY topic, kafka_partition, kafka_offset
LIMIT 1 BY topic, kafka_partition
"""

CHAIN_START_COLUMNS = ("topic", "kafka_partition", "first_offset", "prev_hash")


@dataclass
class PruneResult:
    """Rows deleted, and the chains left alone because they do not verify up to the cut."""

    deleted: int = 0
    broken: list[tuple[str, int]] = field(default_factory=list)


def prune_chain(store: Store, cutoff: datetime, table: str = "query_audit") -> PruneResult:
    """Delete the rows of ``table`` (a chained log with a ``ts`` column) older than ``cutoff``
    from the front of each chain, recording each chain's new start first."""
    when = cutoff.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    result = PruneResult()
    for topic, partition, offset, prev_hash, n, breaks in store.query(_FRONT.format(table=table), {"cutoff": when}).rows:
        if int(n) == 1:
            continue  # nothing older than the cutoff before this row
        if int(breaks):
            log.error("%s chain %s/%d does not verify before offset %d: not pruned (see `lineage verify`)",
                      table, topic, partition, offset)
            result.broken.append((str(topic), int(partition)))
            continue
        starts = R.TableRows(CHAIN_START_COLUMNS)
        starts.append(topic, partition, offset, prev_hash)
        store.insert_arrow("chain_starts", starts.to_arrow())
        store.command(
            f"DELETE FROM {table} WHERE topic = {{topic:String}} AND kafka_partition = {{partition:UInt32}} "
            "AND kafka_offset < {offset:UInt64}",
            {"topic": topic, "partition": partition, "offset": offset},
        )
        result.deleted += int(n) - 1
        log.info("%s chain %s/%d now starts at offset %d (%d rows past retention deleted)",
                 table, topic, partition, offset, int(n) - 1)
    return result
