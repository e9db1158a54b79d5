-- The stored row hashes that `lineage verify` compares with the signed checkpoints: for each
-- requested range of a chain (raw log or query audit log), its rows ('row': offset, event id,
-- row_hash), the partition's extent ('extent': last offset, row count) and, once pruned, where its
-- chain starts ('start': first kept offset). Parameter `ranges`: a JSON array of
-- [topic, partition, first_offset, last_offset].
--
-- Run as-is:
--   clickhouse-client --database lineage --param_ranges='[["lineage.graph",0,0,100]]' --queries-file verify_hashes.sql
WITH
logged AS
(
    SELECT topic, kafka_partition, kafka_offset, event_id, row_hash FROM raw_events
    UNION ALL
    SELECT topic, kafka_partition, kafka_offset, audit_id AS event_id, row_hash FROM query_audit
)
SELECT kind, topic, kafka_partition, kafka_offset, event_id, row_hash, rows
FROM
(
    SELECT 'row' AS kind, topic, kafka_partition, kafka_offset, event_id, row_hash, toUInt64(1) AS rows
    FROM logged
    WHERE arrayExists(r -> r.1 = topic AND r.2 = kafka_partition AND kafka_offset >= r.3 AND kafka_offset <= r.4,
                      JSONExtract({ranges:String}, 'Array(Tuple(String, UInt32, UInt64, UInt64))'))
    UNION ALL
    SELECT 'extent', topic, kafka_partition, max(kafka_offset), '', '', count()
    FROM logged
    WHERE arrayExists(r -> r.1 = topic AND r.2 = kafka_partition,
                      JSONExtract({ranges:String}, 'Array(Tuple(String, UInt32, UInt64, UInt64))'))
    GROUP BY topic, kafka_partition
    UNION ALL
    SELECT 'start', topic, kafka_partition, max(first_offset), '', '', toUInt64(0)
    FROM chain_starts
    WHERE arrayExists(r -> r.1 = topic AND r.2 = kafka_partition,
                      JSONExtract({ranges:String}, 'Array(Tuple(String, UInt32, UInt64, UInt64))'))
    GROUP BY topic, kafka_partition
)
ORDER BY kind, topic, kafka_partition, kafka_offset
