-- Pipeline metrics and alerts, written by the sink from the metrics and alerts topics
-- (and directly by the alerting side). Both idempotent on replay.

-- A time series point; `series` identifies the label set so a replay replaces, never doubles.
CREATE TABLE IF NOT EXISTS pipeline_metrics
(
    name    LowCardinality(String),
    labels  Map(LowCardinality(String), String),
    ts      DateTime64(3, 'UTC'),
    value   Float64,
    series  UInt64 MATERIALIZED cityHash64(toString(mapSort(labels)))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (name, series, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Alert transitions: one row per (alert instance, state). state is 'firing' or 'resolved';
-- an instance is (fingerprint, starts_at). The current state is the row with the latest updated_at.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_name  LowCardinality(String),
    state       LowCardinality(String),
    severity    LowCardinality(String),
    labels      Map(String, String),
    summary     String,
    starts_at   DateTime64(3, 'UTC'),
    ends_at     Nullable(DateTime64(3, 'UTC')),
    fingerprint String,
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (fingerprint, starts_at, state)
SETTINGS non_replicated_deduplication_window = 10000;
