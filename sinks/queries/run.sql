-- One run's place in its run hierarchy (OpenLineage `parent` facet 1-2-0 with `root`), its
-- events and its datasets: e.g. Airflow DAG run -> task run -> Spark application -> Spark job.
--
-- Run as-is:
--   clickhouse-client --database lineage --param_run_id=0190a3c2-7d1e-7b3a-9c4f-1e2d3c4b5a60 \
--     --param_max_depth=20 --queries-file run.sql
--   lineage query run RUN_ID [--json]
-- Parameters:
--   run_id     String   the run (OpenLineage runId)
--   max_depth  UInt32   parent/child hops to follow each way
-- Output, one row per item, `section` first:
--   hierarchy  level < 0 ancestors (relation 'ancestor', or 'root' for the run named as root),
--              0 the run itself ('self'), > 0 descendants ('descendant'); namespace/name of the
--              run's job; state = its latest event type; event_time = its latest event;
--              detail = processing type (BATCH/STREAMING) when stated
--   event      the run's own events: state = event type, event_time, detail = event id
--   dataset    relation 'input' or 'output'; namespace/name of the dataset; event_time = first seen
-- A parent or root known only from a child's facet has its job from that facet and no events.
WITH RECURSIVE
    up AS
    (
        SELECT src AS run, toUInt32(1) AS depth
        FROM (SELECT DISTINCT src, dst FROM edges WHERE edge_type = 'parent_of')
        WHERE dst = concat('run:', {run_id:String})
        UNION ALL
        SELECT e.src, up.depth + 1
        FROM (SELECT DISTINCT src, dst FROM edges WHERE edge_type = 'parent_of') AS e
        INNER JOIN up ON e.dst = up.run
        WHERE up.depth < {max_depth:UInt32}
    ),
    down AS
    (
        SELECT dst AS run, toUInt32(1) AS depth
        FROM (SELECT DISTINCT src, dst FROM edges WHERE edge_type = 'parent_of')
        WHERE src = concat('run:', {run_id:String})
        UNION ALL
        SELECT e.dst, down.depth + 1
        FROM (SELECT DISTINCT src, dst FROM edges WHERE edge_type = 'parent_of') AS e
        INNER JOIN down ON e.src = down.run
        WHERE down.depth < {max_depth:UInt32}
    ),
    roots AS
    (
        -- named as root by the run's own parent facet
        SELECT DISTINCT src AS run FROM edges
        WHERE edge_type = 'root_of' AND dst IN (concat('run:', {run_id:String}))
    ),
    family AS
    (
        SELECT run, level, relation FROM
        (
            SELECT run, -toInt32(min(depth)) AS level, 'ancestor' AS relation FROM up GROUP BY run
            UNION ALL
            SELECT run, -toInt32((SELECT max(depth) FROM up) + 1), 'root' FROM roots WHERE run NOT IN (SELECT run FROM up)
            UNION ALL
            SELECT concat('run:', {run_id:String}), toInt32(0), 'self'
            UNION ALL
            SELECT run, toInt32(min(depth)), 'descendant' FROM down GROUP BY run
            UNION ALL
            -- runs naming this one as their root whose chain of parents is not (yet) recorded
            SELECT DISTINCT dst, toInt32((SELECT max(depth) FROM down) + 1), 'descendant' FROM edges
            WHERE edge_type = 'root_of' AND src = concat('run:', {run_id:String}) AND dst NOT IN (SELECT run FROM down)
        )
    ),
    run_rows AS
    (
        SELECT node_id, namespace, name, attributes, event_id, event_time
        FROM nodes
        WHERE node_type = 'run' AND node_id IN (SELECT run FROM family)
    )
SELECT * FROM
(
SELECT 'hierarchy' AS section, f.level AS level,
       if(f.relation = 'ancestor' AND f.run IN (SELECT run FROM roots), 'root',
          if(f.relation = 'ancestor' AND f.level = (SELECT min(level) FROM family) AND (SELECT count() FROM roots) = 0,
             'root', f.relation)) AS relation,
       substring(f.run, 5) AS run_id,
       if(countIf(r.attributes['stated_by'] = '') > 0, anyIf(r.namespace, r.attributes['stated_by'] = ''), any(r.namespace)) AS namespace,
       if(countIf(r.attributes['stated_by'] = '') > 0, anyIf(r.name, r.attributes['stated_by'] = ''), any(r.name)) AS name,
       argMaxIf(r.attributes['event_type'], r.event_time, r.attributes['stated_by'] = '') AS state,
       if(countIf(r.attributes['stated_by'] = '') > 0, maxIf(r.event_time, r.attributes['stated_by'] = ''), NULL) AS event_time,
       anyIf(r.attributes['processing_type'], r.attributes['processing_type'] != '') AS detail
FROM family AS f
LEFT JOIN run_rows AS r ON r.node_id = f.run
GROUP BY f.run, f.level, f.relation
UNION ALL
SELECT 'event', 0, 'self', {run_id:String}, any(namespace), any(name), any(attributes['event_type']), min(event_time), event_id
FROM run_rows
WHERE node_id = concat('run:', {run_id:String}) AND attributes['stated_by'] = ''
GROUP BY event_id
UNION ALL
SELECT 'dataset', 0, if(edge_type = 'read_by', 'input', 'output'), {run_id:String}, any(n.namespace), any(n.name), '',
       min(e.event_time), ''
FROM edges AS e
LEFT JOIN (SELECT node_id, any(namespace) AS namespace, any(name) AS name FROM nodes WHERE node_type = 'dataset' GROUP BY node_id) AS n
       ON n.node_id = if(e.edge_type = 'read_by', e.src, e.dst)
WHERE e.run_id = {run_id:String} AND e.edge_type IN ('read_by', 'produced')
  AND if(e.edge_type = 'read_by', e.dst, e.src) = concat('run:', {run_id:String})
GROUP BY e.edge_type, if(e.edge_type = 'read_by', e.src, e.dst)
)
ORDER BY section = 'hierarchy' DESC, section = 'event' DESC, level, event_time, namespace, name
