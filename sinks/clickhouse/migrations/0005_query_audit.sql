-- The query audit log and where each hash chain now starts.

-- Every record of the audit topic (who did what, when, why, with what outcome), exactly as
-- consumed, in Kafka order. Append-only: never updated; rows older than LINEAGE_AUDIT__RETENTION_DAYS
-- are pruned from the front of the chain by the sink (see chain_starts).
-- row_hash = sha256(prev_hash || '\n' || topic || '\n' || partition || '\n' || offset || '\n' || record),
-- chained per (topic, kafka_partition) in offset order like raw_events; `lineage verify` recomputes it.
-- The readable columns are ALIAS expressions of `record`: the hashed record is the only content
-- stored, so a changed field is a changed record. `SELECT *` shows the stored columns only: name
-- the readable ones, or use the named query `audit_log`.
CREATE TABLE IF NOT EXISTS query_audit
(
    topic           LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    record          String,
    prev_hash       String,
    row_hash        String,
    ts              DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(JSONExtractInt(record, 'ts'), 'UTC'),
    audit_id        String ALIAS JSONExtractString(record, 'audit_id'),
    who             String ALIAS JSONExtractString(record, 'who'),
    role            String ALIAS JSONExtractString(record, 'role'),
    via             String ALIAS JSONExtractString(record, 'via'),
    action          String ALIAS JSONExtractString(record, 'action'),
    what            String ALIAS JSONExtractString(record, 'what'),
    params          String ALIAS JSONExtractRaw(record, 'params'),
    reason          String ALIAS JSONExtractString(record, 'reason'),
    outcome         String ALIAS JSONExtractString(record, 'outcome'),
    rows            UInt64 ALIAS JSONExtractUInt(record, 'rows'),
    duration_ms     Float64 ALIAS JSONExtractFloat(record, 'duration_ms'),
    details         String ALIAS JSONExtractRaw(record, 'details')
)
ENGINE = MergeTree
ORDER BY (topic, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 10000;

-- Where a chain starts after its older rows were pruned: the first kept offset and the row_hash
-- of the row before it. `lineage verify` walks each chain from here (from GENESIS when absent).
CREATE TABLE IF NOT EXISTS chain_starts
(
    topic           LowCardinality(String),
    kafka_partition UInt32,
    first_offset    UInt64,
    prev_hash       String,
    updated_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(first_offset)
ORDER BY (topic, kafka_partition);
