-- The query audit log, newest first: who (key name and role, or the local administrator), via
-- (api or cli), when, what (the statement, query name, snapshot pointer, subject reference,
-- prediction id or key name), its parameters, why, the outcome ('ok', 'refused: ...',
-- 'failed: ...'), rows and duration; details holds what else the operation recorded.
--
-- Run as-is:
--   clickhouse-client --database lineage --param_since='2024-06-15 00:00:00' --param_who= \
--       --param_action= --param_limit=100 --queries-file audit_log.sql
--   lineage audit log [--since 2h] [--who NAME] [--action A] [--limit N] [--json]
-- Parameters:
--   since   DateTime64  records at or after this time (UTC); `lineage` also takes 30m, 2h, 7d (ago)
--   who     String      only this actor (key name, or local:<os user>); '' for everyone
--   action  String      only this action (sql, query, report, decrypt, erase, flag, key.create,
--                       key.revoke, key.rotate); '' for every action
--   limit   UInt32      at most this many records
SELECT ts, who, role, via, action, what, params, reason, outcome, rows, duration_ms, details
FROM query_audit
WHERE ts >= {since:DateTime64(6, 'UTC')}
  AND ({who:String} = '' OR who = {who:String})
  AND ({action:String} = '' OR action = {action:String})
ORDER BY ts DESC, kafka_offset DESC
LIMIT {limit:UInt32}
