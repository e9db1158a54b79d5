-- Downstream impact of any node (everything derived from it): runs, datasets, feature sets,
-- model versions, models and predictions; with depth, an optional time window and time travel.
--
-- Audit use: "which models and predictions are downstream of table T's rows from June 15-20":
--   lineage query downstream --namespace NS --name T --since 2024-06-15 --until 2024-06-20T23:59:59
--   clickhouse-client --database lineage --param_namespace=NS --param_name=T --param_node_type='' \
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
-- the window is not impacted even if it shares a feature set name. Output: one row per edge,
-- nearest first, with the reached node's version as of the edge time.
WITH RECURSIVE dn AS
(
    SELECT src, dst, edge_type, argMin(run_id, event_time) AS run_id, min(event_time) AS t,
           argMin(event_id, event_time) AS event_id, toUInt32(1) AS depth
    FROM edges
    -- start nodes by id (ids are built from namespace + name, see lineage/graph.py), so the
    -- ordering key serves the lookup; models, model versions and feature sets have namespace ''
    WHERE (src IN (
                if({node_type:String} IN ('', 'dataset'), concat('dataset:', {namespace:String}, '/', {name:String}), ''),
                if({node_type:String} IN ('', 'job'), concat('job:', {namespace:String}, '/', {name:String}), ''),
                if({node_type:String} IN ('', 'model') AND {namespace:String} = '', concat('model:', {name:String}), ''),
                if({node_type:String} = 'prediction', concat('prediction:', {name:String}), ''))
           OR ({namespace:String} = '' AND {node_type:String} IN ('', 'model_version')
               AND startsWith(src, concat('model_version:', {name:String}, '@')))
           OR ({namespace:String} = '' AND {node_type:String} IN ('', 'feature_set')
               AND startsWith(src, concat('feature_set:', {name:String}, '@'))))
      AND event_time >= {since:DateTime64(6, 'UTC')} AND event_time <= {until:DateTime64(6, 'UTC')}
      AND event_time <= {as_of:DateTime64(6, 'UTC')}
    GROUP BY src, dst, edge_type
    UNION ALL
    SELECT e.src, e.dst, e.edge_type, argMin(e.run_id, e.event_time), min(e.event_time),
           argMin(e.event_id, e.event_time), any(dn.depth) + 1
    FROM edges AS e
    INNER JOIN dn ON e.src = dn.dst
    WHERE e.src IN (SELECT dst FROM dn) AND e.event_time >= dn.t
      AND e.event_time <= {as_of:DateTime64(6, 'UTC')} AND dn.depth < {max_depth:UInt32}
    GROUP BY e.src, e.dst, e.edge_type
),
paths AS
(
    SELECT src, dst, edge_type, min(depth) AS depth, argMin(run_id, t) AS run_id, min(t) AS edge_time,
           argMin(event_id, t) AS event_id
    FROM dn
    GROUP BY src, dst, edge_type
)
SELECT
    p.depth AS depth,
    p.dst AS node_id,
    any(n.node_type) AS node_type,
    any(n.namespace) AS namespace,
    any(n.name) AS name,
    if(countIf(n.event_id = p.event_id AND n.version != '') > 0,
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
GROUP BY depth, node_id, edge_type, upstream_node, run_id, edge_time
ORDER BY depth, node_id, upstream_node
