-- What changed between two versions of a model: code, artifact, hyperparameters, feature-set
-- versions, features, training datasets (versions and digests), and the datasets behind the
-- feature sets. Only differences are returned.
--
-- Run as-is:
--   clickhouse-client --database lineage --param_model=fraud --param_from_version=1 --param_to_version=2 \
--     --queries-file diff.sql
--   lineage query diff --model fraud --from 1 --to 2 [--json]
-- Parameters:
--   model         String  model name
--   from_version  String  old version
--   to_version    String  new version
-- Output: aspect, key, from_value, to_value, change ('added' | 'removed' | 'changed').
-- A feature set's upstream dataset versions come from the feature run that produced it.
WITH
runs AS
(
    SELECT model_version, run_id, code_version, artifact_digest, hyperparameters, dataset_digests, feature_sets, input_datasets
    FROM training_runs FINAL
    WHERE model_name = {model:String} AND model_version IN ({from_version:String}, {to_version:String})
),
fs_features AS
(
    -- features of each feature-set version, from its latest node row that lists them
    SELECT node_id, argMax(attributes['features'], event_time) AS features
    FROM nodes
    WHERE node_type = 'feature_set' AND attributes['features'] != ''
      AND node_id IN (SELECT arrayJoin(arrayMap(f -> concat('feature_set:', f), feature_sets)) FROM runs)
    GROUP BY node_id
),
fs_inputs AS
(
    -- datasets read by the run that produced each feature-set version, with the version read
    SELECT p.dst AS fs_node, r.src AS dataset, argMax(n.version, n.event_time) AS version
    FROM edges AS p
    INNER JOIN edges AS r ON r.dst = p.src AND r.edge_type = 'read_by'
    LEFT JOIN nodes AS n ON n.node_id = r.src AND n.event_id = r.event_id
    WHERE p.edge_type = 'produced'
      AND p.dst IN (SELECT arrayJoin(arrayMap(f -> concat('feature_set:', f), feature_sets)) FROM runs)
    GROUP BY fs_node, dataset
),
items AS
(
    SELECT model_version AS v, 'code' AS aspect, 'code_version' AS key, code_version AS value FROM runs
    UNION ALL SELECT model_version, 'code', 'artifact_digest', artifact_digest FROM runs
    UNION ALL SELECT model_version, 'code', 'training_run', run_id FROM runs
    UNION ALL SELECT model_version, 'hyperparameter', mk, mv FROM runs ARRAY JOIN mapKeys(hyperparameters) AS mk, mapValues(hyperparameters) AS mv
    UNION ALL SELECT model_version, 'feature_set', splitByChar('@', f)[1], splitByChar('@', f)[2] FROM runs ARRAY JOIN feature_sets AS f
    UNION ALL SELECT model_version, 'training_dataset', mk, mv FROM runs ARRAY JOIN mapKeys(input_datasets) AS mk, mapValues(input_datasets) AS mv
    UNION ALL SELECT model_version, 'dataset_digest', mk, mv FROM runs ARRAY JOIN mapKeys(dataset_digests) AS mk, mapValues(dataset_digests) AS mv
    UNION ALL
    SELECT r.model_version, 'feature', feat, splitByChar('@', f)[1]
    FROM runs AS r ARRAY JOIN r.feature_sets AS f
    INNER JOIN fs_features AS ff ON ff.node_id = concat('feature_set:', f)
    ARRAY JOIN splitByChar(',', ff.features) AS feat
    UNION ALL
    SELECT r.model_version, 'feature_set_input', concat(splitByChar('@', f)[1], ' <- ', replaceOne(fi.dataset, 'dataset:', '')), fi.version
    FROM runs AS r ARRAY JOIN r.feature_sets AS f
    INNER JOIN fs_inputs AS fi ON fi.fs_node = concat('feature_set:', f)
),
a AS (SELECT aspect, key, groupUniqArray(value) AS vals FROM items WHERE v = {from_version:String} GROUP BY aspect, key),
b AS (SELECT aspect, key, groupUniqArray(value) AS vals FROM items WHERE v = {to_version:String} GROUP BY aspect, key)
SELECT
    if(a.aspect != '', a.aspect, b.aspect) AS aspect,
    if(a.key != '', a.key, b.key) AS key,
    arrayStringConcat(arraySort(a.vals), ', ') AS from_value,
    arrayStringConcat(arraySort(b.vals), ', ') AS to_value,
    multiIf(empty(a.vals), 'added', empty(b.vals), 'removed', 'changed') AS change
FROM a
FULL OUTER JOIN b ON a.aspect = b.aspect AND a.key = b.key
WHERE arraySort(a.vals) != arraySort(b.vals)
ORDER BY aspect, key
SETTINGS join_use_nulls = 0
