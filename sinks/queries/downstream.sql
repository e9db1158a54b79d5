-- Downstream impact of any node (everything derived from it): runs, datasets, feature sets,
-- model versions, models and predictions; with depth, an optional time window and time travel.
--
-- Audit use: "which models and predictions are downstream of table T's rows from June 15-20":
--   lineage query downstream --namespace NS --name T --since 2024-06-15 --until 2024-06-20T23:59:59
--   clickhouse-client --database lineage --enable_materialized_cte=1 \
--     --param_namespace=NS --param_name=T --param_node_type='' \
--     --param_max_depth=10 --param_since='2024-06-15 00:00:00' --param_until='2024-06-20 23:59:59' \
--     --param_as_of='2299-12-31 00:00:00' --queries-file downstream.sql
-- Parameters:
--   namespace, name  String        the start node(s), as in upstream.sql
--   node_type        String        '' for any type, else only start nodes of this type
--   max_depth        UInt32        hops to follow
--   since, until     DateTime64(6) window for the start node's own edges: for a dataset, the runs
--                                    that read (or wrote) it in the window
--   as_of            DateTime64(6) answer as the graph stood then: later edges are ignored
-- Later hops must not be older than the hop they come from (causality): a model trained before
-- the window is not impacted even if it shares a feature set name. Dataset versions, mirroring
-- prediction.sql: a dataset version written by a run reached reaches only the runs that read
-- that version (the read names the version and a recorded run wrote it), or, for a read
-- without a version (or of a version no recorded run wrote), only when this run made the
-- latest write at or before the read. So rows of June 15-20 do not impact what was computed
-- from the table after a later run rewrote it. Output: one row per edge, nearest first, with
-- the reached node's version as of the edge time.
-- A dataset known under several identities (the symlinks facet, view dataset_identity) is one
-- dataset for the walk: it starts from every identity of the start node and goes on under every
-- identity of a dataset it reaches.
-- `paths` is read twice: with enable_materialized_cte = 1 (the embedded store sets it) the
-- walk runs once (and so does `ident`).
WITH
-- every identity of a symlinked dataset (dataset_identity): a dataset written under one name
-- reaches the readers of all of them
ident AS MATERIALIZED
(
    SELECT i.node_id AS node_id, j.node_id AS member
    FROM dataset_identity AS i INNER JOIN dataset_identity AS j ON j.canonical = i.canonical
),
paths AS MATERIALIZED
(
    WITH RECURSIVE dn AS
    (
        SELECT src, dst, edge_type, argMin(run_id, event_time) AS run_id, min(event_time) AS t,
               argMin(event_id, event_time) AS event_id,
               argMinIf(dst_version, event_time, dst_version != '') AS dst_version, toUInt32(1) AS depth
        FROM edges
        -- start nodes by id (ids are built from namespace + name, see lineage/graph.py), so the
        -- ordering key serves the lookup; models, model versions and feature sets have namespace ''
        WHERE (src IN (
                    if({node_type:String} IN ('', 'dataset'), concat('dataset:', {namespace:String}, '/', {name:String}), ''),
                    if({node_type:String} IN ('', 'job'), concat('job:', {namespace:String}, '/', {name:String}), ''),
                    if({node_type:String} IN ('', 'model') AND {namespace:String} = '', concat('model:', {name:String}), ''),
                    if({node_type:String} IN ('', 'model_version') AND {namespace:String} = '', concat('model_version:', {name:String}), ''),
                    if({node_type:String} IN ('', 'feature_set') AND {namespace:String} = '', concat('feature_set:', {name:String}), ''),
                    if({node_type:String} = 'prediction', concat('prediction:', {name:String}), ''))
               OR ({namespace:String} = '' AND {node_type:String} IN ('', 'model_version')
                   AND startsWith(src, concat('model_version:', {name:String}, '@')))
               OR ({namespace:String} = '' AND {node_type:String} IN ('', 'feature_set')
                   AND startsWith(src, concat('feature_set:', {name:String}, '@')))
               -- a dataset known under several identities (symlinks facet): start from all of them
               OR ({node_type:String} IN ('', 'dataset') AND src IN (
                   SELECT node_id FROM dataset_identity WHERE canonical IN (
                       SELECT canonical FROM dataset_identity
                       WHERE node_id = concat('dataset:', {namespace:String}, '/', {name:String})))))
          AND event_time >= {since:DateTime64(6, 'UTC')} AND event_time <= {until:DateTime64(6, 'UTC')}
          AND event_time <= {as_of:DateTime64(6, 'UTC')}
        GROUP BY src, dst, edge_type
        UNION ALL
        SELECT src, dst, edge_type, argMin(run_id, event_time), min(event_time), argMin(event_id, event_time),
               argMinIf(dst_version, event_time, dst_version != ''), any(depth) + 1
        FROM
        (
            -- candidate edges out of each node reached; out of a dataset (its reads), with the runs
            -- that wrote the dataset up to each read
            SELECT e.src AS src, e.dst AS dst, e.edge_type AS edge_type, e.run_id AS run_id,
                   e.event_time AS event_time, e.event_id AS event_id, e.dst_version AS dst_version,
                   e.src_version AS read_version, dn.src AS writer, dn.dst_version AS written_version,
                   dn.depth AS depth,
                   countIf(e.src_version != '' AND w.version = e.src_version AND w.written <= e.event_time) AS writes_of_version,
                   argMaxIf(w.writer, w.written, w.written <= e.event_time) AS latest_writer
            FROM edges AS e
            INNER JOIN
            (
                SELECT d.src AS src, d.dst AS dst, d.edge_type AS edge_type, d.t AS t, d.dst_version AS dst_version,
                       d.depth AS depth, if(m.member != '', m.member, d.dst) AS key
                FROM dn AS d LEFT JOIN ident AS m ON m.node_id = d.dst
            ) AS dn ON e.src = dn.key
            LEFT JOIN
            (
                -- a write under any identity of the dataset counts as a write of each of them
                SELECT if(m.member != '', m.member, x.dst) AS dataset, x.src AS writer, x.dst_version AS version,
                       x.event_time AS written
                FROM edges AS x LEFT JOIN ident AS m ON m.node_id = x.dst
                WHERE x.dst IN (SELECT dst FROM dn WHERE startsWith(dst, 'dataset:')
                                UNION ALL SELECT member FROM ident WHERE node_id IN (SELECT dst FROM dn))
                  AND x.event_time <= {as_of:DateTime64(6, 'UTC')}
            ) AS w ON w.dataset = e.src
            WHERE e.src IN (SELECT dst FROM dn UNION ALL SELECT member FROM ident WHERE node_id IN (SELECT dst FROM dn))
              AND e.event_time >= dn.t
              AND e.event_time <= {as_of:DateTime64(6, 'UTC')} AND dn.depth < {max_depth:UInt32}
            GROUP BY e.src, e.dst, e.edge_type, e.run_id, e.event_time, e.event_id, e.src_version, e.dst_version,
                     dn.src, dn.edge_type, dn.dst_version, dn.depth
        )
        WHERE NOT startsWith(src, 'dataset:')
           OR if(writes_of_version > 0, read_version = written_version, writer = latest_writer)
        GROUP BY src, dst, edge_type
    )
    SELECT src, dst, edge_type, min(depth) AS depth, argMin(run_id, t) AS run_id, min(t) AS edge_time,
           argMin(event_id, t) AS event_id, argMinIf(dst_version, t, dst_version != '') AS dst_version
    FROM dn
    GROUP BY src, dst, edge_type
)
SELECT
    p.depth AS depth,
    p.dst AS node_id,
    any(n.node_type) AS node_type,
    any(n.namespace) AS namespace,
    any(n.name) AS name,
    multiIf(p.dst_version != '', p.dst_version,
            countIf(n.event_id = p.event_id AND n.version != '') > 0,
            anyIf(n.version, n.event_id = p.event_id AND n.version != ''),
            argMaxIf(n.version, n.event_time, n.event_time <= p.edge_time AND n.version != '')) AS version,
    p.edge_type AS edge_type,
    p.src AS upstream_node,
    p.run_id AS run_id,
    p.edge_time AS edge_time
FROM paths AS p
LEFT JOIN
(
    SELECT node_id, node_type, namespace, name, version, event_id, event_time
    FROM nodes
    WHERE node_id IN (SELECT dst FROM paths) AND event_time <= {as_of:DateTime64(6, 'UTC')}
) AS n ON n.node_id = p.dst
GROUP BY depth, node_id, edge_type, upstream_node, run_id, edge_time, p.dst_version
ORDER BY depth, node_id, upstream_node
