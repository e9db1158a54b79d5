-- The size of each hash-chained log, for `lineage verify`'s summary: rows and partitions of the
-- raw log (raw_events) and of the query audit log (query_audit), one row per log. No parameters.
--
-- Run as-is:
--   clickhouse-client --database lineage --queries-file verify_summary.sql
SELECT 'raw_events' AS chain, count() AS rows, uniqExact(topic, kafka_partition) AS partitions FROM raw_events
UNION ALL
SELECT 'query_audit' AS chain, count() AS rows, uniqExact(topic, kafka_partition) AS partitions FROM query_audit
