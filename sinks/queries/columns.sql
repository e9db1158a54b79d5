-- Column-level lineage of a dataset (or one of its columns), multi-hop, upstream or downstream,
-- with the transformation of every hop (OpenLineage columnLineage 1-2-0).
--
-- Run as-is:
--   clickhouse-client --database lineage \
--     --param_namespace='hdfs://namenode:8020' --param_name=/warehouse/sales_summary \
--     --param_column=total_amount --param_direction=upstream --param_max_depth=10 \
--     --param_as_of='2299-12-31 00:00:00' --queries-file columns.sql
--   lineage query columns --namespace NS --name NAME [--column C] [--direction upstream|downstream] [--depth N] [--json]
-- Parameters:
--   namespace, name  String        the dataset (source URI and name, as in the events)
--   column           String        one column, or '' for every column of the dataset
--   direction        String        'upstream': the columns it is computed from;
--                                   'downstream': the columns computed from it
--   max_depth        UInt32        hops to follow
--   as_of            DateTime64(6) answer as the lineage stood then: later statements are ignored
-- Output: one row per hop, nearest first. For upstream, (dataset, column) feeds (via_dataset,
-- via_column); for downstream, (via_dataset, via_column) feeds (dataset, column).
-- transformation_type DIRECT / INDIRECT, subtype IDENTITY, TRANSFORMATION, AGGREGATION, JOIN,
-- GROUP_BY, FILTER, ...; masking 1 when the hop masks the value; dataset_wide 1 when the source
-- column affects the whole output (the facet's `dataset` list); run_id the latest run stating it.
WITH RECURSIVE walk AS
(
    SELECT far_ds, far_col, near_ds, near_col, transformation_type, subtype, masking, dataset_wide,
           run_id, last_seen, toUInt32(1) AS depth
    FROM
    (
        SELECT if({direction:String} = 'upstream', src, dst) AS far_ds,
               if({direction:String} = 'upstream', src_column, dst_column) AS far_col,
               if({direction:String} = 'upstream', dst, src) AS near_ds,
               if({direction:String} = 'upstream', dst_column, src_column) AS near_col,
               transformation_type, subtype, max(masking) AS masking, max(dataset_wide) AS dataset_wide,
               argMax(run_id, event_time) AS run_id, max(event_time) AS last_seen
        FROM column_edges
        WHERE event_time <= {as_of:DateTime64(6, 'UTC')}
          -- the dataset under any of its identities (symlinks facet, view dataset_identity)
          AND if({direction:String} = 'upstream', dst, src) IN (
              SELECT concat('dataset:', {namespace:String}, '/', {name:String})
              UNION ALL
              SELECT node_id FROM dataset_identity WHERE canonical IN (
                  SELECT canonical FROM dataset_identity
                  WHERE node_id = concat('dataset:', {namespace:String}, '/', {name:String})))
        GROUP BY far_ds, far_col, near_ds, near_col, transformation_type, subtype
    )
    WHERE {column:String} = '' OR near_col = {column:String}
    UNION ALL
    SELECT e.far_ds, e.far_col, e.near_ds, e.near_col, e.transformation_type, e.subtype, e.masking, e.dataset_wide,
           e.run_id, e.last_seen, w.depth + 1
    FROM
    (
        SELECT if({direction:String} = 'upstream', src, dst) AS far_ds,
               if({direction:String} = 'upstream', src_column, dst_column) AS far_col,
               if({direction:String} = 'upstream', dst, src) AS near_ds,
               if({direction:String} = 'upstream', dst_column, src_column) AS near_col,
               transformation_type, subtype, max(masking) AS masking, max(dataset_wide) AS dataset_wide,
               argMax(run_id, event_time) AS run_id, max(event_time) AS last_seen
        FROM column_edges
        WHERE event_time <= {as_of:DateTime64(6, 'UTC')}
        GROUP BY far_ds, far_col, near_ds, near_col, transformation_type, subtype
    ) AS e
    INNER JOIN walk AS w ON e.near_ds = w.far_ds AND e.near_col = w.far_col
    WHERE w.depth < {max_depth:UInt32}
)
SELECT
    min(w.depth) AS depth,
    any(n.namespace) AS namespace,
    any(n.name) AS dataset,
    w.far_col AS column,
    w.transformation_type AS transformation_type,
    w.subtype AS subtype,
    max(w.masking) AS masking,
    max(w.dataset_wide) AS dataset_wide,
    any(v.namespace) AS via_namespace,
    any(v.name) AS via_dataset,
    w.near_col AS via_column,
    argMax(w.run_id, w.last_seen) AS run_id
FROM walk AS w
LEFT JOIN
(
    SELECT node_id, any(namespace) AS namespace, any(name) AS name FROM nodes
    WHERE node_type = 'dataset' GROUP BY node_id
) AS n ON n.node_id = w.far_ds
LEFT JOIN
(
    SELECT node_id, any(namespace) AS namespace, any(name) AS name FROM nodes
    WHERE node_type = 'dataset' GROUP BY node_id
) AS v ON v.node_id = w.near_ds
GROUP BY w.far_ds, column, transformation_type, subtype, w.near_ds, via_column
ORDER BY depth, namespace, dataset, column, via_dataset, via_column, transformation_type, subtype
