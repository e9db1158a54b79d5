-- Upstream lineage of any node (everything it was derived from), with depth, an optional time
-- window and time travel.
--
-- Run as-is:
--   clickhouse-client --database lineage --param_namespace='postgres://crm:5432' --param_name=crm.public.customers \
--     --param_node_type='' --param_max_depth=10 --param_since='1970-01-01 00:00:00' \
--     --param_until='2299-12-31 00:00:00' --param_as_of='2299-12-31 00:00:00' --queries-file upstream.sql
--   lineage query upstream --namespace NS --name NAME [--depth N] [--since T] [--until T] [--as-of T] [--json]
-- Parameters:
--   namespace, name  String        the start node(s): the dataset / job with this namespace and name
--                                    (datasets: namespace = source URI; jobs: job namespace;
--                                    feature sets, models, model versions: namespace '')
--   node_type        String        '' for any type, else only start nodes of this type
--   max_depth        UInt32        hops to follow
--   since, until     DateTime64(6) window for the start node's own edges (its first hop)
--   as_of            DateTime64(6) answer as the graph stood then: later edges are ignored
-- Later hops must not be younger than the hop they lead to (causality). Output: one row per
-- edge, nearest first, with the node's version as of the edge time.
WITH RECURSIVE up AS
(
    SELECT src, dst, edge_type, argMin(run_id, event_time) AS run_id, min(event_time) AS t,
           argMin(event_id, event_time) AS event_id, toUInt32(1) AS depth
    FROM edges
    -- start nodes by id (ids are built from namespace + name, see lineage/graph.py), so the
    -- ordering key serves the lookup; models, model versions and feature sets have namespace ''
    WHERE (dst IN (
                if({node_type:String} IN ('', 'dataset'), concat('dataset:', {namespace:String}, '/', {name:String}), ''),
                if({node_type:String} IN ('', 'job'), concat('job:', {namespace:String}, '/', {name:String}), ''),
                if({node_type:String} IN ('', 'model') AND {namespace:String} = '', concat('model:', {name:String}), ''),
                if({node_type:String} = 'prediction', concat('prediction:', {name:String}), ''))
           OR ({namespace:String} = '' AND {node_type:String} IN ('', 'model_version')
               AND startsWith(dst, concat('model_version:', {name:String}, '@')))
           OR ({namespace:String} = '' AND {node_type:String} IN ('', 'feature_set')
               AND startsWith(dst, concat('feature_set:', {name:String}, '@'))))
      AND event_time >= {since:DateTime64(6, 'UTC')} AND event_time <= {until:DateTime64(6, 'UTC')}
      AND event_time <= {as_of:DateTime64(6, 'UTC')}
    GROUP BY src, dst, edge_type
    UNION ALL
    SELECT e.src, e.dst, e.edge_type, argMin(e.run_id, e.event_time), min(e.event_time),
           argMin(e.event_id, e.event_time), any(up.depth) + 1
    FROM edges AS e
    INNER JOIN up ON e.dst = up.src
    WHERE e.dst IN (SELECT src FROM up) AND e.event_time <= up.t
      AND e.event_time <= {as_of:DateTime64(6, 'UTC')} AND up.depth < {max_depth:UInt32}
    GROUP BY e.src, e.dst, e.edge_type
),
paths AS
(
    SELECT src, dst, edge_type, min(depth) AS depth, argMin(run_id, t) AS run_id, min(t) AS edge_time,
           argMin(event_id, t) AS event_id
    FROM up
    GROUP BY src, dst, edge_type
)
SELECT
    p.depth AS depth,
    p.src AS node_id,
    any(n.node_type) AS node_type,
    any(n.namespace) AS namespace,
    any(n.name) AS name,
    if(countIf(n.event_id = p.event_id AND n.version != '') > 0,
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
GROUP BY depth, node_id, edge_type, downstream_node, run_id, edge_time
ORDER BY depth, node_id, downstream_node
