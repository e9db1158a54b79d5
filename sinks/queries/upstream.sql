-- Upstream lineage of any node (everything it was derived from), with depth, an optional time
-- window and time travel.
--
-- Run as-is:
--   clickhouse-client --database lineage --enable_materialized_cte=1 \
--     --param_namespace='postgres://crm:5432' --param_name=crm.public.customers \
--     --param_node_type='' --param_max_depth=10 --param_since='1970-01-01 00:00:00' \
--     --param_until='2299-12-31 00:00:00' --param_as_of='2299-12-31 00:00:00' --queries-file upstream.sql
--   lineage query upstream --namespace NS --name NAME [--depth N] [--since T] [--until T] [--as-of T] [--json]
-- Parameters:
--   namespace, name  String        the start node(s): the dataset / job with this namespace and name
--                                    (datasets: namespace = source URI; jobs: job namespace;
--                                    feature sets, models, model versions: namespace '', and
--                                    name 'NAME' for every version or 'NAME@VERSION' for one)
--   node_type        String        '' for any type, else only start nodes of this type
--   max_depth        UInt32        hops to follow
--   since, until     DateTime64(6) window for the start node's own edges (its first hop)
--   as_of            DateTime64(6) answer as the graph stood then: later edges are ignored
-- Later hops must not be younger than the hop they lead to (causality). A dataset reached
-- through a read is traced to the run that wrote the version read, else (no version read, or
-- a version no recorded run wrote) to the latest run that wrote it at or before the read; see
-- prediction.sql. The start node's own writers are all listed (within since/until). Output:
-- one row per edge, nearest first, with the node's version as of the edge time.
-- A dataset known under several identities (the symlinks facet, view dataset_identity) is one
-- dataset for the walk: it starts from every identity of the start node and goes on under every
-- identity of a dataset it reaches.
-- `paths` is read twice: with enable_materialized_cte = 1 (the embedded store sets it) the
-- walk runs once (and so does `ident`).
WITH
-- every identity of a symlinked dataset (dataset_identity): a dataset reached under one name
-- is traced to the writers of all of them
ident AS MATERIALIZED
(
    SELECT i.node_id AS node_id, j.node_id AS member
    FROM dataset_identity AS i INNER JOIN dataset_identity AS j ON j.canonical = i.canonical
),
paths AS MATERIALIZED
(
    WITH RECURSIVE up AS
    (
        SELECT src, dst, edge_type, argMin(run_id, event_time) AS run_id, min(event_time) AS t,
               argMin(event_id, event_time) AS event_id,
               argMinIf(src_version, event_time, src_version != '') AS src_version, toUInt32(1) AS depth
        FROM edges
        -- start nodes by id (ids are built from namespace + name, see lineage/graph.py), so the
        -- ordering key serves the lookup; models, model versions and feature sets have namespace ''
        WHERE (dst IN (
                    if({node_type:String} IN ('', 'dataset'), concat('dataset:', {namespace:String}, '/', {name:String}), ''),
                    if({node_type:String} IN ('', 'job'), concat('job:', {namespace:String}, '/', {name:String}), ''),
                    if({node_type:String} IN ('', 'model') AND {namespace:String} = '', concat('model:', {name:String}), ''),
                    if({node_type:String} IN ('', 'model_version') AND {namespace:String} = '', concat('model_version:', {name:String}), ''),
                    if({node_type:String} IN ('', 'feature_set') AND {namespace:String} = '', concat('feature_set:', {name:String}), ''),
                    if({node_type:String} = 'prediction', concat('prediction:', {name:String}), ''))
               OR ({namespace:String} = '' AND {node_type:String} IN ('', 'model_version')
                   AND startsWith(dst, concat('model_version:', {name:String}, '@')))
               OR ({namespace:String} = '' AND {node_type:String} IN ('', 'feature_set')
                   AND startsWith(dst, concat('feature_set:', {name:String}, '@')))
               -- a dataset known under several identities (symlinks facet): start from all of them
               OR ({node_type:String} IN ('', 'dataset') AND dst IN (
                   SELECT node_id FROM dataset_identity WHERE canonical IN (
                       SELECT canonical FROM dataset_identity
                       WHERE node_id = concat('dataset:', {namespace:String}, '/', {name:String})))))
          AND event_time >= {since:DateTime64(6, 'UTC')} AND event_time <= {until:DateTime64(6, 'UTC')}
          AND event_time <= {as_of:DateTime64(6, 'UTC')}
        GROUP BY src, dst, edge_type
        UNION ALL
        SELECT src, dst, edge_type, argMin(run_id, event_time), min(event_time), argMin(event_id, event_time),
               argMinIf(src_version, event_time, src_version != ''), any(depth) + 1
        FROM
        (
            SELECT e.src AS src, e.dst AS dst, e.edge_type AS edge_type, e.run_id AS run_id, e.event_time AS event_time,
                   e.event_id AS event_id, e.src_version AS src_version, e.dst_version AS dst_version,
                   up.src_version AS read_version, up.depth AS depth,
                   countIf(up.src_version != '' AND e.dst_version = up.src_version) OVER reader AS writes_of_version,
                   argMax(e.src, e.event_time) OVER reader AS latest_writer
            FROM edges AS e
            INNER JOIN
            (
                SELECT u.src AS src, u.dst AS dst, u.edge_type AS edge_type, u.t AS t, u.src_version AS src_version,
                       u.depth AS depth, if(m.member != '', m.member, u.src) AS key
                FROM up AS u LEFT JOIN ident AS m ON m.node_id = u.src
            ) AS up ON e.dst = up.key
            WHERE e.dst IN (SELECT src FROM up UNION ALL SELECT member FROM ident WHERE node_id IN (SELECT src FROM up))
              AND e.event_time <= up.t
              AND e.event_time <= {as_of:DateTime64(6, 'UTC')} AND up.depth < {max_depth:UInt32}
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
    multiIf(p.src_version != '', p.src_version,
            countIf(n.event_id = p.event_id AND n.version != '') > 0,
            anyIf(n.version, n.event_id = p.event_id AND n.version != ''),
            argMaxIf(n.version, n.event_time, n.event_time <= p.edge_time AND n.version != '')) AS version,
    p.edge_type AS edge_type,
    p.dst AS downstream_node,
    p.run_id AS run_id,
    p.edge_time AS edge_time
FROM paths AS p
LEFT JOIN
(
    SELECT node_id, node_type, namespace, name, version, event_id, event_time
    FROM nodes
    WHERE node_id IN (SELECT src FROM paths) AND event_time <= {as_of:DateTime64(6, 'UTC')}
) AS n ON n.node_id = p.src
GROUP BY depth, node_id, edge_type, downstream_node, run_id, edge_time, p.src_version
ORDER BY depth, node_id, downstream_node
