-- Lineage completeness of one model: per version, the share of predictions with full lineage,
-- and whether the version itself has training lineage; the last row ('(all)') totals them.
--
-- Run as-is:
--   clickhouse-client --database lineage --param_model=fraud --queries-file completeness.sql
--   lineage query completeness --model fraud [--json]
-- Parameters:
--   model  String  registered model name
--
-- A version has training lineage when a training run for it is recorded with at least one
-- feature set or input dataset. A prediction has full lineage when its version does and the
-- pipeline did not mark it incomplete (e.g. an unknown model version at inference time).
-- Predictions are read through inference_lineage_resolved, so a version whose training
-- lineage arrived after its predictions counts as known (late binding, any order or delay).
WITH
versions AS
(
    SELECT model_version, max(length(feature_sets) + length(input_datasets) > 0) AS has_training
    FROM training_runs FINAL
    WHERE model_name = {model:String}
    GROUP BY model_version
),
preds AS
(
    SELECT model_version,
           count() AS predictions,
           countIf(unknown_model_version = 0) AS known_version,
           countIf(tier = 'full') AS full_tier
    FROM inference_lineage_resolved
    WHERE model_name = {model:String}
    GROUP BY model_version
),
per_version AS
(
    SELECT
        if(v.model_version != '', v.model_version, p.model_version) AS mv,
        p.predictions AS n_predictions,
        if(v.has_training = 1, p.known_version, 0) AS n_full,
        p.full_tier AS n_full_tier,
        toUInt8(v.has_training = 1) AS has_tl
    FROM versions AS v
    FULL OUTER JOIN preds AS p ON v.model_version = p.model_version
)
SELECT
    if(grouping(mv) = 1, '(all)', mv) AS model_version,
    sum(n_predictions) AS predictions,
    sum(n_full) AS full_lineage_predictions,
    round(if(predictions = 0, 1, full_lineage_predictions / predictions), 4) AS prediction_share,
    count() AS versions,
    sum(has_tl) AS versions_with_training_lineage,
    round(versions_with_training_lineage / versions, 4) AS version_share,
    sum(n_full_tier) AS full_tier_predictions
FROM per_version
GROUP BY ROLLUP(mv)
ORDER BY grouping(mv), mv
