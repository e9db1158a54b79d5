-- Column-level lineage: the columnLineage dataset facet (OpenLineage 1-2-0) as edges between
-- columns. One row per (column edge, event that stated it), in data-flow direction: column
-- src_column of dataset src feeds column dst_column of dataset dst (src/dst are dataset node ids,
-- as in `edges`). transformation_type is DIRECT or INDIRECT ('' when a facet older than 1-2-0 did
-- not say), subtype IDENTITY, TRANSFORMATION, AGGREGATION, JOIN, GROUP_BY, FILTER, SORT, WINDOW,
-- CONDITIONAL...; masking = 1 when the transformation masks the value; dataset_wide = 1 for
-- entries of the facet's `dataset` list, stated for every column of the output.
-- Read with FINAL (replays collapse on the sort key). Queried by sinks/queries/columns.sql.
CREATE TABLE IF NOT EXISTS column_edges
(
    src                 String,
    src_column          String,
    dst                 String,
    dst_column          String,
    transformation_type LowCardinality(String),
    subtype             LowCardinality(String),
    description         String,
    masking             UInt8,
    dataset_wide        UInt8,
    run_id              String,
    event_id            String,
    event_time          DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (dst, dst_column, src, src_column, transformation_type, subtype, event_id)
SETTINGS non_replicated_deduplication_window = 10000;
