-- The dataset/job lineage graph around one node, as Marquez's `GET /api/v1/lineage` shows it:
-- datasets and jobs, each run folded into its job, walked in both directions (the jobs that
-- wrote or read a dataset, the datasets a job read or wrote, and on) up to a depth. Datasets
-- known under several identities (the `symlinks` facet, see dataset_identity) are one node, under
-- their canonical id. Served as `GET /api/v1/lineage?nodeId=...&depth=N` (sinks/marquez.py).
--
-- Run as-is (enable_materialized_cte lets ClickHouse compute the folded graph once, not per hop):
--   clickhouse-client --database lineage --enable_materialized_cte=1 --param_node_id='dataset:postgres://crm:5432/crm.public.customers' \
--     --param_max_depth=40 --queries-file marquez_lineage.sql
-- Parameters:
--   node_id    String  the start node: 'dataset:NAMESPACE/NAME' or 'job:NAMESPACE/NAME' (any identity)
--   max_depth  UInt32  hops to follow (dataset -> job and job -> dataset are one hop each)
-- Output: one row per node reached: node_id, node_type ('dataset' or 'job'), namespace, name,
-- version and attributes (the latest stated), updated_at (its latest event), depth (hops from the
-- start), inputs (ids of the nodes with an edge into it) and outputs (ids it has an edge to), both
-- among the nodes reached, and for a job processing_type (BATCH / STREAMING, '' if never stated).
WITH
    ident AS MATERIALIZED (SELECT node_id, canonical FROM dataset_identity),
    runs AS MATERIALIZED (SELECT dst AS run, any(src) AS job FROM edges WHERE edge_type = 'executes' GROUP BY dst),
    flow AS MATERIALIZED
    (
        SELECT if(i1.canonical != '', i1.canonical, f.src) AS src, if(i2.canonical != '', i2.canonical, f.dst) AS dst
        FROM
        (
            SELECT e.src AS src, r.job AS dst FROM edges AS e INNER JOIN runs AS r ON r.run = e.dst
            WHERE e.edge_type = 'read_by' AND startsWith(e.src, 'dataset:')
            UNION ALL
            SELECT r.job AS src, e.dst AS dst FROM edges AS e INNER JOIN runs AS r ON r.run = e.src
            WHERE e.edge_type = 'produced' AND startsWith(e.dst, 'dataset:')
            UNION ALL
            SELECT src, dst FROM edges WHERE edge_type IN ('declared_input', 'declared_output')
        ) AS f
        LEFT JOIN ident AS i1 ON i1.node_id = f.src
        LEFT JOIN ident AS i2 ON i2.node_id = f.dst
        GROUP BY src, dst
    ),
    reached AS MATERIALIZED
    (
        WITH RECURSIVE
        adjacent AS
        (
            SELECT src AS a, dst AS b FROM flow
            UNION ALL
            SELECT dst AS a, src AS b FROM flow
        ),
        start AS
        (
            SELECT if(count() > 0, any(i.canonical), {node_id:String}) AS node FROM ident AS i WHERE i.node_id = {node_id:String}
        ),
        walk AS
        (
            SELECT node, toUInt32(0) AS depth FROM start
            UNION ALL
            SELECT j.b AS node, any(w.depth) + 1 AS depth
            FROM walk AS w INNER JOIN adjacent AS j ON j.a = w.node
            WHERE w.depth < {max_depth:UInt32}
            GROUP BY j.b
        )
        SELECT node, min(depth) AS depth FROM walk GROUP BY node
    )
SELECT
    r.node AS node_id,
    n.node_type AS node_type,
    n.namespace AS namespace,
    n.name AS name,
    n.version AS version,
    n.attributes AS attributes,
    n.updated_at AS updated_at,
    r.depth AS depth,
    arraySort(i.inputs) AS inputs,
    arraySort(o.outputs) AS outputs,
    p.processing_type AS processing_type
FROM reached AS r
LEFT JOIN
(
    SELECT node_id, any(node_type) AS node_type, any(namespace) AS namespace, any(name) AS name,
           argMaxIf(version, event_time, version != '') AS version,
           argMaxIf(attributes, event_time, length(attributes) > 0) AS attributes,
           max(event_time) AS updated_at
    FROM nodes
    WHERE node_id IN (SELECT node FROM reached)
    GROUP BY node_id
) AS n ON n.node_id = r.node
LEFT JOIN
(
    SELECT dst, groupUniqArray(src) AS inputs FROM flow
    WHERE dst IN (SELECT node FROM reached) AND src IN (SELECT node FROM reached) GROUP BY dst
) AS i ON i.dst = r.node
LEFT JOIN
(
    SELECT src, groupUniqArray(dst) AS outputs FROM flow
    WHERE src IN (SELECT node FROM reached) AND dst IN (SELECT node FROM reached) GROUP BY src
) AS o ON o.src = r.node
LEFT JOIN
(
    -- a job's processing type (BATCH / STREAMING) as its latest run stated it
    SELECT e.src AS job, argMaxIf(n.attributes['processing_type'], n.event_time,
                                  n.attributes['processing_type'] != '') AS processing_type
    FROM edges AS e INNER JOIN nodes AS n ON n.node_id = e.dst
    WHERE e.edge_type = 'executes' AND e.src IN (SELECT node FROM reached) AND n.node_type = 'run'
    GROUP BY e.src
) AS p ON p.job = r.node
WHERE n.node_type IN ('dataset', 'job')
ORDER BY node_id
