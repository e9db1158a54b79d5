-- Lineage graph: immutable hash-chained raw log, versioned nodes, timed edges, inference lineage.
-- Runs as-is on chDB and on a ClickHouse server (tables live in the session's default database).
-- `lineage sink --render-ddl --cluster NAME` prints the Replicated/Distributed variant.

-- Every consumed graph record, exactly as consumed, in Kafka order. Never updated.
-- row_hash = sha256(prev_hash || '\n' || topic || '\n' || partition || '\n' || offset || '\n' || record),
-- chained per (topic, kafka_partition) in offset order; `lineage verify` recomputes it.
CREATE TABLE IF NOT EXISTS raw_events
(
    topic           LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    event_id        String,
    kind            LowCardinality(String),
    event_type      LowCardinality(String),
    event_time      DateTime64(6, 'UTC'),
    correlation_id  String,
    record          String,
    prev_hash       String,
    row_hash        String,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_event_id event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = MergeTree
ORDER BY (topic, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 10000;

-- Last chained row per partition after each batch: lets `verify` notice a deleted tail.
CREATE TABLE IF NOT EXISTS chain_heads
(
    topic           LowCardinality(String),
    kafka_partition UInt32,
    last_offset     UInt64,
    row_hash        String,
    updated_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(last_offset)
ORDER BY (topic, kafka_partition);

-- One row per (node, event that mentioned it): the node's versions and attributes over time.
-- Read the state as of T with argMax(..., event_time) over rows with event_time <= T.
CREATE TABLE IF NOT EXISTS nodes
(
    node_id     String,
    node_type   LowCardinality(String),
    namespace   String,
    name        String,
    version     String,
    attributes  Map(String, String),
    event_id    String,
    event_time  DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (node_id, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per (edge, event that asserted it), in data-flow direction src -> dst.
-- Sorted by dst for backward provenance; the by_src projection serves forward impact.
CREATE TABLE IF NOT EXISTS edges
(
    src         String,
    dst         String,
    edge_type   LowCardinality(String),
    run_id      String,
    event_id    String,
    event_time  DateTime64(6, 'UTC'),
    PROJECTION by_src (SELECT * ORDER BY src, dst, edge_type, event_id)
)
ENGINE = ReplacingMergeTree
ORDER BY (dst, src, edge_type, event_id)
SETTINGS non_replicated_deduplication_window = 10000, deduplicate_merge_projection_mode = 'rebuild';

-- One row per prediction (latest event wins, e.g. a promotion after `lineage flag`). No PII:
-- subject_ref is the pipeline's pseudonymous reference, the snapshot only a pointer + digest.
CREATE TABLE IF NOT EXISTS inference_lineage
(
    prediction_id         String,
    event_id              String,
    event_time            DateTime64(6, 'UTC'),
    model_name            LowCardinality(String),
    model_version         LowCardinality(String),
    endpoint              LowCardinality(String),
    decision_type         LowCardinality(String),
    risk_score            Float64,
    regulatory_class      LowCardinality(String),
    subject_ref           String,
    training_run_id       String,
    feature_sets          Array(String),
    tier                  LowCardinality(String),
    tier_reason           String,
    snapshot_pointer      String,
    snapshot_sha256       String,
    lineage_complete      UInt8,
    unknown_model_version UInt8,
    correlation_id        String,
    extra                 Map(String, String),
    INDEX idx_prediction prediction_id TYPE bloom_filter GRANULARITY 2,
    INDEX idx_time event_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(event_time)
ORDER BY (model_name, model_version, prediction_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- What each training run used: the basis of `lineage query diff`. Latest event per run wins.
CREATE TABLE IF NOT EXISTS training_runs
(
    model_name      LowCardinality(String),
    model_version   String,
    run_id          String,
    event_id        String,
    event_type      LowCardinality(String),
    event_time      DateTime64(6, 'UTC'),
    job             String,
    code_version    String,
    artifact_digest String,
    hyperparameters Map(String, String),
    dataset_digests Map(String, String),
    feature_sets    Array(String),
    input_datasets  Map(String, String),
    metrics         Map(String, Float64)
)
ENGINE = ReplacingMergeTree(event_time)
ORDER BY (model_name, model_version, run_id)
SETTINGS non_replicated_deduplication_window = 10000;
