-- Backward provenance of one prediction: model version -> training run -> feature-set versions
-- -> feature runs -> datasets -> ... -> sources, with the version of every node as it was used
-- and the time of every edge.
--
-- Run as-is:
--   clickhouse-client --database lineage --param_prediction_id=p-123 --param_max_depth=12 --queries-file prediction.sql
--   lineage query prediction p-123 [--json]
-- Parameters:
--   prediction_id  String   the prediction id (without the 'prediction:' prefix)
--   max_depth      UInt32   hops to follow upstream (12 covers any realistic pipeline)
--
-- Walks edges backward (dst -> src) with a recursive CTE. Each step only follows edges that
-- existed no later than the edge it came from (causality): a dataset re-written after the
-- model was trained is not in its provenance. `e.dst IN (SELECT src FROM up)` lets ClickHouse
-- use the edges ordering key (dst, ...) instead of scanning the table at every step.
-- Output: one row per edge on the way up, nearest first.
WITH RECURSIVE up AS
(
    SELECT src, dst, edge_type, argMin(run_id, event_time) AS run_id, min(event_time) AS t,
           argMin(event_id, event_time) AS event_id, toUInt32(1) AS depth
    FROM edges
    WHERE dst = concat('prediction:', {prediction_id:String})
    GROUP BY src, dst, edge_type
    UNION ALL
    SELECT e.src, e.dst, e.edge_type, argMin(e.run_id, e.event_time), min(e.event_time),
           argMin(e.event_id, e.event_time), any(up.depth) + 1
    FROM edges AS e
    INNER JOIN up ON e.dst = up.src
    WHERE e.dst IN (SELECT src FROM up) AND e.event_time <= up.t AND up.depth < {max_depth:UInt32}
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
    -- the version as asserted by the event behind this edge, else the latest known at that time
    if(countIf(n.event_id = p.event_id AND n.version != '') > 0,
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
GROUP BY depth, node_id, edge_type, downstream_node, run_id, edge_time
ORDER BY depth, node_id, downstream_node
