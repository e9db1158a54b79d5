-- Backward provenance of one prediction: model version -> training run -> feature-set versions
-- -> feature runs -> datasets -> ... -> sources, with the version of every node as it was used
-- and the time of every edge.
--
-- Run as-is:
--   clickhouse-client --database lineage --enable_materialized_cte=1 \
--     --param_prediction_id=p-123 --param_max_depth=12 --queries-file prediction.sql
--   lineage query prediction p-123 [--json]
-- Parameters:
--   prediction_id  String   the prediction id (without the 'prediction:' prefix)
--   max_depth      UInt32   hops to follow upstream (12 covers any realistic pipeline)
--
-- Walks edges backward (dst -> src) with a recursive CTE. Each step only follows edges that
-- existed no later than the edge it came from (causality): a dataset re-written after the
-- model was trained is not in its provenance. `e.dst IN (SELECT src FROM up)` lets ClickHouse
-- use the edges ordering key (dst, ...) instead of scanning the table at every step.
--
-- Dataset versions: a dataset is reached through the edge that read it, which carries the
-- version read (src_version). Of the runs that wrote the dataset, only these are followed:
--   * the run(s) whose write carries that version (dst_version), when the read names a
--     version and a recorded run wrote it;
--   * otherwise (no version read, or a version no recorded run wrote) the run of the latest
--     write at or before the read: the version that was current when it was read (as of).
-- So a table rewritten daily contributes the one ETL run that produced what was read, not
-- every earlier run. Edges stored before versions were recorded count as "no version".
--
-- `paths` is read twice; with enable_materialized_cte = 1 (the embedded store sets it) the
-- walk runs once, without it twice: same answer, slower.
-- Output: one row per edge on the way up, nearest first.
WITH paths AS MATERIALIZED
(
    WITH RECURSIVE up AS
    (
        SELECT src, dst, edge_type, argMin(run_id, event_time) AS run_id, min(event_time) AS t,
               argMin(event_id, event_time) AS event_id,
               argMinIf(src_version, event_time, src_version != '') AS src_version, toUInt32(1) AS depth
        FROM edges
        WHERE dst = concat('prediction:', {prediction_id:String})
        GROUP BY src, dst, edge_type
        UNION ALL
        SELECT src, dst, edge_type, argMin(run_id, event_time), min(event_time), argMin(event_id, event_time),
               argMinIf(src_version, event_time, src_version != ''), any(depth) + 1
        FROM
        (
            -- the edges into each node reached, with what the edge that reached it read
            SELECT e.src AS src, e.dst AS dst, e.edge_type AS edge_type, e.run_id AS run_id,
                   e.event_time AS event_time, e.event_id AS event_id, e.src_version AS src_version,
                   e.dst_version AS dst_version, up.src_version AS read_version, up.depth AS depth,
                   countIf(up.src_version != '' AND e.dst_version = up.src_version) OVER reader AS writes_of_version,
                   argMax(e.src, e.event_time) OVER reader AS latest_writer
            FROM edges AS e
            INNER JOIN up ON e.dst = up.src
            WHERE e.dst IN (SELECT src FROM up) AND e.event_time <= up.t AND up.depth < {max_depth:UInt32}
            WINDOW reader AS (PARTITION BY up.src, up.dst, up.edge_type)
        )
        WHERE NOT startsWith(dst, 'dataset:')
           OR if(writes_of_version > 0, dst_version = read_version, src = latest_writer)
        GROUP BY src, dst, edge_type
    )
    SELECT src, dst, edge_type, min(depth) AS depth, argMin(run_id, t) AS run_id, min(t) AS edge_time,
           argMin(event_id, t) AS event_id, argMinIf(src_version, t, src_version != '') AS src_version
    FROM up
    GROUP BY src, dst, edge_type
)
SELECT
    p.depth AS depth,
    p.src AS node_id,
    any(n.node_type) AS node_type,
    any(n.namespace) AS namespace,
    any(n.name) AS name,
    -- the version as the edge (the event behind it) states it, else the latest known at that time
    multiIf(p.src_version != '', p.src_version,
            countIf(n.event_id = p.event_id AND n.version != '') > 0,
            anyIf(n.version, n.event_id = p.event_id AND n.version != ''),
            argMaxIf(n.version, n.event_time, n.event_time <= p.edge_time AND n.version != '')) AS version,
    p.edge_type AS edge_type,
    p.dst AS downstream_node,
    p.run_id AS run_id,
    p.edge_time AS edge_time,
    argMaxIf(n.attributes, n.event_time, n.event_time <= p.edge_time AND length(n.attributes) > 0) AS attributes
FROM paths AS p
LEFT JOIN
(
    SELECT node_id, node_type, namespace, name, version, attributes, event_id, event_time
    FROM nodes
    WHERE node_id IN (SELECT src FROM paths)
) AS n ON n.node_id = p.src
GROUP BY depth, node_id, edge_type, downstream_node, run_id, edge_time, p.src_version
ORDER BY depth, node_id, downstream_node
