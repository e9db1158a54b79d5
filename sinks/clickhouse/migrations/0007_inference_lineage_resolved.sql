-- Late binding: a prediction's training lineage derived at read time.
--
-- A prediction is stored with the training run its model version had when the worker joined
-- it. When that version's training events arrive later (a backfill, an outage, another topic
-- or partition running behind), the stored row says training_run_id = '' and
-- unknown_model_version = 1. This view fills the gap from training_runs at every read, so
-- whatever arrived since (any order, any delay) counts without rewriting a stored row:
--   * training_run_id: the prediction's own (named by the event or joined by the worker),
--     else the model version's training run: the latest COMPLETE run, else the latest run
--     that has not FAILed or ABORTed;
--   * feature_sets: the stored ones (the snapshot's feature set) joined with that run's, when
--     the run is the one filled in or the one stored (as the worker joins them);
--   * unknown_model_version: 0 once any such run of the version is recorded;
--   * lineage_complete: the stored verdict, or now a run and feature sets are known and the
--     tier's snapshot requirement is met (routine needs none, every other tier a stored
--     snapshot pointer), the same rule the worker applies;
--   * late_bound: 1 when the row's training lineage came from this derivation, not the store.
-- The shipped queries read this view; inference_lineage keeps what was consumed, unchanged.
CREATE VIEW IF NOT EXISTS inference_lineage_resolved AS
SELECT
    i.prediction_id AS prediction_id, i.event_id AS event_id, i.event_time AS event_time,
    i.model_name AS model_name, i.model_version AS model_version, i.endpoint AS endpoint,
    i.decision_type AS decision_type, i.risk_score AS risk_score, i.regulatory_class AS regulatory_class,
    i.subject_ref AS subject_ref,
    if(i.training_run_id != '', i.training_run_id, t.run_id) AS training_run_id,
    if(i.training_run_id IN ('', t.run_id), arraySort(arrayDistinct(arrayConcat(i.feature_sets, t.feature_sets))),
       i.feature_sets) AS feature_sets,
    i.tier AS tier, i.tier_reason AS tier_reason, i.snapshot_pointer AS snapshot_pointer,
    i.snapshot_sha256 AS snapshot_sha256,
    toUInt8(i.lineage_complete = 1 OR (training_run_id != '' AND notEmpty(feature_sets)
                                       AND (i.tier = 'routine' OR i.snapshot_pointer != ''))) AS lineage_complete,
    toUInt8(i.unknown_model_version = 1 AND t.run_id = '') AS unknown_model_version,
    i.correlation_id AS correlation_id, i.extra AS extra,
    toUInt8(t.run_id != '' AND (i.training_run_id = '' OR i.unknown_model_version = 1)) AS late_bound
FROM inference_lineage AS i FINAL
LEFT JOIN
(
    SELECT model_name, model_version,
           argMax(run_id, (event_type = 'COMPLETE', event_time)) AS run_id,
           argMax(feature_sets, (event_type = 'COMPLETE', event_time)) AS feature_sets
    FROM training_runs FINAL
    WHERE event_type NOT IN ('FAIL', 'ABORT')
    GROUP BY model_name, model_version
) AS t ON t.model_name = i.model_name AND t.model_version = i.model_version
SETTINGS join_use_nulls = 0;

-- The same without the pseudonymous subject reference: what analysts read.
CREATE VIEW IF NOT EXISTS inference_lineage_resolved_anon AS
SELECT prediction_id, event_id, event_time, model_name, model_version, endpoint, decision_type,
       risk_score, regulatory_class, training_run_id, feature_sets, tier, tier_reason,
       snapshot_pointer, snapshot_sha256, lineage_complete, unknown_model_version, correlation_id, extra,
       late_bound
FROM inference_lineage_resolved;
