-- Audit: which source datasets (and which versions of them) contributed to the predictions of
-- model M between dates A and B. Walks backward from every model version that served a
-- prediction in the window, only through edges no later than that version's last prediction
-- in the window (causality), and reports every dataset reached. A dataset read is traced to
-- the run that wrote the version read, else (no version read, or a version no recorded run
-- wrote) to the latest run that wrote it at or before the read, as in prediction.sql: a model
-- version trained on Tuesday's table reaches Tuesday's ETL run and its inputs only.
--
-- Run as-is:
--   clickhouse-client --database lineage --enable_materialized_cte=1 --param_model=fraud \
--     --param_since='2024-06-19 00:00:00' --param_until='2024-06-19 23:59:59' --param_max_depth=12 \
--     --queries-file sources.sql
--   lineage query sources --model fraud --since 2024-06-19 --until 2024-06-19T23:59:59 [--json]
-- Parameters:
--   model         String         model name
--   since, until  DateTime64(6)  prediction time window (UTC)
--   max_depth     UInt32         hops to follow upstream
-- Output: one row per dataset: versions read (as the reading event states them, else the
-- dataset's latest version at the time of the read), is_source (no recorded run wrote it),
-- the model versions it fed, and how many predictions in the window depend on it.
-- The walk is read several times: with enable_materialized_cte = 1 (the embedded store sets
-- it) it runs once.
WITH
preds AS MATERIALIZED
(
    SELECT concat('model_version:', {model:String}, '@', model_version) AS root, count() AS predictions,
           max(event_time) AS last_at
    FROM inference_lineage_resolved
    WHERE model_name = {model:String}
      AND event_time >= {since:DateTime64(6, 'UTC')} AND event_time <= {until:DateTime64(6, 'UTC')}
    GROUP BY model_version
),
walk AS MATERIALIZED
(
    WITH RECURSIVE up AS
    (
        SELECT p.root AS root, e.src AS src, e.dst AS dst, e.edge_type AS edge_type, min(e.event_time) AS t,
               argMinIf(e.src_version, e.event_time, e.src_version != '') AS src_version, toUInt32(1) AS depth
        FROM edges AS e
        INNER JOIN preds AS p ON e.dst = p.root
        WHERE e.dst IN (SELECT root FROM preds) AND e.event_time <= p.last_at
        GROUP BY p.root, e.src, e.dst, e.edge_type
        UNION ALL
        SELECT root, src, dst, edge_type, min(event_time), argMinIf(src_version, event_time, src_version != ''), any(depth) + 1
        FROM
        (
            SELECT up.root AS root, e.src AS src, e.dst AS dst, e.edge_type AS edge_type, e.event_time AS event_time,
                   e.src_version AS src_version, e.dst_version AS dst_version, up.src_version AS read_version,
                   up.depth AS depth,
                   countIf(up.src_version != '' AND e.dst_version = up.src_version) OVER reader AS writes_of_version,
                   argMax(e.src, e.event_time) OVER reader AS latest_writer
            FROM edges AS e
            INNER JOIN up ON e.dst = up.src
            WHERE e.dst IN (SELECT src FROM up) AND e.event_time <= up.t AND up.depth < {max_depth:UInt32}
            WINDOW reader AS (PARTITION BY up.root, up.src, up.dst, up.edge_type)
        )
        WHERE NOT startsWith(dst, 'dataset:')
           OR if(writes_of_version > 0, dst_version = read_version, src = latest_writer)
        GROUP BY root, src, dst, edge_type
    )
    SELECT root, src, dst, t, src_version FROM up
),
reads AS MATERIALIZED
(
    SELECT root, src AS node_id, dst, min(t) AS read_at, argMinIf(src_version, t, src_version != '') AS version_read
    FROM walk
    WHERE startsWith(src, 'dataset:')
    GROUP BY root, src, dst
),
versioned AS
(
    SELECT r.root AS root, r.node_id AS node_id, any(n.namespace) AS ns, any(n.name) AS nm,
           if(r.version_read != '', r.version_read,
              argMaxIf(n.version, n.event_time, n.event_time <= r.read_at AND n.version != '')) AS version
    FROM reads AS r
    LEFT JOIN (SELECT node_id, namespace, name, version, event_time FROM nodes WHERE node_id IN (SELECT node_id FROM reads)) AS n
        ON n.node_id = r.node_id
    GROUP BY r.root, r.node_id, r.dst, r.read_at, r.version_read
),
per_root AS
(
    SELECT root, node_id, any(ns) AS ns, any(nm) AS nm, groupUniqArray(version) AS vers FROM versioned GROUP BY root, node_id
)
SELECT
    any(pr.ns) AS namespace,
    any(pr.nm) AS name,
    arraySort(arrayFilter(x -> x != '', arrayDistinct(arrayFlatten(groupArray(pr.vers))))) AS versions,
    toUInt8(pr.node_id NOT IN (SELECT dst FROM walk)) AS is_source,
    arraySort(groupArray(replaceOne(pr.root, concat('model_version:', {model:String}, '@'), ''))) AS model_versions,
    sum(p.predictions) AS predictions
FROM per_root AS pr
INNER JOIN preds AS p ON p.root = pr.root
GROUP BY pr.node_id
ORDER BY is_source DESC, namespace, name
