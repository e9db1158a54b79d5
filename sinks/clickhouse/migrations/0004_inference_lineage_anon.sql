-- inference_lineage without the pseudonymous subject reference: what analysts read
-- (the SQL sandbox refuses inference_lineage itself to the analyst role). Columns are listed,
-- not `* EXCEPT`, so a column added to the table later is not shown here until chosen.
CREATE VIEW IF NOT EXISTS inference_lineage_anon AS
SELECT prediction_id, event_id, event_time, model_name, model_version, endpoint, decision_type,
       risk_score, regulatory_class, training_run_id, feature_sets, tier, tier_reason,
       snapshot_pointer, snapshot_sha256, lineage_complete, unknown_model_version, correlation_id, extra
FROM inference_lineage;
