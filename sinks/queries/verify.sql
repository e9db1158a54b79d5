-- Tamper evidence: walk the per-partition hash chain of the raw log and list every break.
-- An empty result means the log is intact.
--
-- Run as-is:
--   clickhouse-client --database lineage --queries-file verify.sql
--   lineage verify [--json]            (exit status 1 when anything is reported)
--
-- Each row stores row_hash = sha256(prev_hash || '\n' || topic || '\n' || partition || '\n' ||
-- offset || '\n' || record) and the previous row's hash. Problems reported:
--   altered         the row's content no longer matches its row_hash
--   missing_before  the row does not link to the row before it: rows between gap_from_offset
--                   and this offset were deleted (or a hash was rewritten)
--   duplicate       the same offset is stored twice
--   missing_tail    chain_heads recorded a later last row than the log now holds
WITH chain AS
(
    SELECT
        topic, kafka_partition, kafka_offset, event_id, prev_hash, row_hash,
        lower(hex(SHA256(concat(prev_hash, '\n', topic, '\n', toString(kafka_partition), '\n',
                                toString(kafka_offset), '\n', record)))) AS computed,
        lagInFrame(row_hash, 1, repeat('0', 64)) OVER w AS expected_prev,
        lagInFrame(kafka_offset, 1, toUInt64(0)) OVER w AS prev_offset,
        row_number() OVER w AS n
    FROM raw_events
    WINDOW w AS (PARTITION BY topic, kafka_partition ORDER BY kafka_offset ASC
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
        if(problem = 'missing_before', if(n = 1, toInt64(-1), toInt64(prev_offset)), toInt64(-1)) AS gap_from_offset,
        multiIf(problem = 'altered', concat('stored ', left(row_hash, 12), '..., content hashes to ', left(computed, 12), '...'),
                problem = 'duplicate', 'offset stored twice',
                n = 1, 'first stored row does not start the chain: earlier rows are missing',
                concat('prev_hash does not match the row at offset ', toString(prev_offset))) AS detail
    FROM chain
    WHERE computed != row_hash OR prev_hash != expected_prev OR (n > 1 AND kafka_offset = prev_offset)
    UNION ALL
    SELECT
        h.topic, h.kafka_partition, h.last_offset, '', 'missing_tail', toInt64(r.max_offset),
        concat('last row recorded at offset ', toString(h.last_offset), ', log ends at ',
               if(r.rows = 0, 'nothing', toString(r.max_offset)))
    FROM
    (
        SELECT topic, kafka_partition, max(ch.last_offset) AS last_offset
        FROM chain_heads AS ch GROUP BY topic, kafka_partition
    ) AS h
    LEFT JOIN
    (
        SELECT topic, kafka_partition, max(kafka_offset) AS max_offset, count() AS rows
        FROM raw_events GROUP BY topic, kafka_partition
    ) AS r ON r.topic = h.topic AND r.kafka_partition = h.kafka_partition
    WHERE r.rows = 0 OR r.max_offset < h.last_offset
)
ORDER BY topic, kafka_partition, kafka_offset, problem
