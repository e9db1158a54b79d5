-- Tamper evidence: walk the per-partition hash chains of the raw log (raw_events) and of the query
-- audit log (query_audit) and list every break. An empty result means both logs are intact.
--
-- Run as-is:
--   clickhouse-client --database lineage --queries-file verify.sql
--   lineage verify [--json]            (exit status 1 when anything is reported)
--
-- Each row stores row_hash = sha256(prev_hash || '\n' || topic || '\n' || partition || '\n' ||
-- offset || '\n' || record) and the previous row's hash. A chain starts from 64 zeros, or, once
-- its oldest rows were pruned (query_audit's retention), from the offset and prev_hash recorded in
-- chain_starts; rows below that offset are not walked. event_id is the audit_id for query_audit.
-- Problems reported:
--   altered         the row's content no longer matches its row_hash
--   missing_before  the row does not link to the row before it (or to the chain's start): rows
--                   after gap_from_offset and before this offset were deleted (or a hash was rewritten)
--   duplicate       the same offset is stored twice
--   missing_tail    chain_heads recorded a later last row than the log now holds
-- Whoever can write the store can also recompute every hash and chain_heads: `lineage verify`
-- therefore also checks the rows against the checkpoints the sink signed (verify_hashes.sql).
WITH
starts AS
(
    SELECT topic, kafka_partition, max(c.first_offset) AS start_offset, argMax(c.prev_hash, c.first_offset) AS start_hash
    FROM chain_starts AS c GROUP BY topic, kafka_partition
),
logged AS
(
    SELECT topic, kafka_partition, kafka_offset, event_id, prev_hash, row_hash, record FROM raw_events
    UNION ALL
    SELECT topic, kafka_partition, kafka_offset, audit_id AS event_id, prev_hash, row_hash, record FROM query_audit
),
chain AS
(
    SELECT
        l.topic AS topic, l.kafka_partition AS kafka_partition, l.kafka_offset AS kafka_offset,
        l.event_id AS event_id, l.prev_hash AS prev_hash, l.row_hash AS row_hash,
        ifNull(s.start_offset, 0) AS first_offset,
        lower(hex(SHA256(concat(l.prev_hash, '\n', l.topic, '\n', toString(l.kafka_partition), '\n',
                                toString(l.kafka_offset), '\n', l.record)))) AS computed,
        lagInFrame(l.row_hash, 1, ifNull(nullIf(s.start_hash, ''), repeat('0', 64))) OVER w AS expected_prev,
        lagInFrame(l.kafka_offset, 1, toUInt64(0)) OVER w AS prev_offset,
        row_number() OVER w AS n
    FROM logged AS l
    LEFT JOIN starts AS s ON s.topic = l.topic AND s.kafka_partition = l.kafka_partition
    WHERE l.kafka_offset >= ifNull(s.start_offset, 0)
    WINDOW w AS (PARTITION BY l.topic, l.kafka_partition ORDER BY l.kafka_offset ASC
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT
    topic, kafka_partition, kafka_offset, event_id, problem, gap_from_offset, detail
FROM
(
    SELECT
        topic, kafka_partition, kafka_offset, event_id,
        multiIf(n > 1 AND kafka_offset = prev_offset, 'duplicate',
                computed != row_hash, 'altered',
                'missing_before') AS problem,
        if(problem = 'missing_before', if(n = 1, toInt64(first_offset) - 1, toInt64(prev_offset)), toInt64(-1)) AS gap_from_offset,
        multiIf(problem = 'altered', concat('stored ', left(row_hash, 12), '..., content hashes to ', left(computed, 12), '...'),
                problem = 'duplicate', 'offset stored twice',
                n = 1 AND first_offset > 0, concat('first stored row does not link to the chain start recorded at offset ',
                                                   toString(first_offset), ': rows are missing'),
                n = 1, 'first stored row does not start the chain: earlier rows are missing',
                concat('prev_hash does not match the row at offset ', toString(prev_offset))) AS detail
    FROM chain
    WHERE computed != row_hash OR prev_hash != expected_prev OR (n > 1 AND kafka_offset = prev_offset)
    UNION ALL
    SELECT
        h.topic, h.kafka_partition, h.last_offset, '', 'missing_tail', toInt64(r.max_offset),
        concat('last row recorded at offset ', toString(h.last_offset), ', log ends at ',
               if(ifNull(r.rows, 0) = 0, 'nothing', toString(r.max_offset)))
    FROM
    (
        SELECT topic, kafka_partition, max(ch.last_offset) AS last_offset
        FROM chain_heads AS ch GROUP BY topic, kafka_partition
    ) AS h
    LEFT JOIN
    (
        SELECT topic, kafka_partition, max(kafka_offset) AS max_offset, count() AS rows
        FROM logged GROUP BY topic, kafka_partition
    ) AS r ON r.topic = h.topic AND r.kafka_partition = h.kafka_partition
    WHERE ifNull(r.rows, 0) = 0 OR r.max_offset < h.last_offset
)
ORDER BY topic, kafka_partition, kafka_offset, problem
