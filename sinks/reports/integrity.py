"""Whether the rows a report used are intact: the hash-chain check of `lineage verify`
(:func:`sinks.clickhouse.verify_report.build_report`: each chain walked from its start, and the
stored rows compared with the checkpoints the sink signed), narrowed to the partitions that hold
those rows.

A report names the rows it relied on as :class:`Evidence`: a statement selecting their event ids
(``raw_events``) or audit ids (``query_audit``). The answer says which partitions were checked,
how many rows of the report sit in them, how many could not be found in the hash-chained logs at
all, and what the check found.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sinks.clickhouse.client import QueryResult
from sinks.clickhouse.verify_report import build_report

if TYPE_CHECKING:
    from lineage.settings import Settings

Run = Callable[[str, dict[str, Any]], QueryResult]
_ID_COLUMN = {"raw_events": "event_id", "query_audit": "audit_id"}
_TRUSTED_CHECKPOINTS = ("valid", "none", "no_public_key")


@dataclass(frozen=True)
class Evidence:
    log: str  # raw_events | query_audit
    ids_sql: str  # one column of ids
    params: dict[str, Any] = field(default_factory=dict)


def _locate(query: Run, ev: Evidence) -> tuple[int, list[dict[str, Any]]]:
    col = _ID_COLUMN[ev.log]
    ids = query(f"SELECT count() FROM (SELECT DISTINCT * FROM ({ev.ids_sql}))", ev.params)
    found = query(
        f"SELECT topic, kafka_partition, uniqExact({col}) AS n, min(kafka_offset) AS first, max(kafka_offset) AS last "
        f"FROM {ev.log} WHERE {col} IN ({ev.ids_sql}) GROUP BY topic, kafka_partition ORDER BY topic, kafka_partition",
        ev.params)
    parts = [{"log": ev.log, "topic": str(t), "partition": int(p), "rows_used": int(n), "first_offset": int(a),
              "last_offset": int(b)} for t, p, n, a, b in found.rows]
    return int(ids.rows[0][0]) if ids.rows else 0, parts


def check_rows(settings: Settings, named: Run, query: Run, evidence: Sequence[Evidence]) -> dict[str, Any]:
    """The integrity section of a report (see the module docstring)."""
    wanted = 0
    merged: dict[tuple[str, str, int], dict[str, Any]] = {}
    for ev in evidence:
        n, parts = _locate(query, ev)
        wanted += n
        for part in parts:
            key = (part["log"], part["topic"], part["partition"])
            if key in merged:
                old = merged[key]
                old["rows_used"] += part["rows_used"]
                old["first_offset"] = min(old["first_offset"], part["first_offset"])
                old["last_offset"] = max(old["last_offset"], part["last_offset"])
            else:
                merged[key] = part
    partitions = sorted(merged.values(), key=lambda p: (p["log"], p["topic"], p["partition"]))
    located = sum(p["rows_used"] for p in partitions)
    verify = build_report(named, settings)
    scope = {(p["topic"], p["partition"]) for p in partitions}
    problems = [p for p in verify["problems"] if (str(p.get("topic")), int(p.get("kafka_partition", -1))) in scope]
    for part in partitions:
        part["problems"] = sum(1 for p in problems if (p.get("topic"), p.get("kafka_partition")) ==
                               (part["topic"], part["partition"]))
    checkpoint = verify["checkpoint"]
    missing = max(0, wanted - located)
    verified = bool(partitions) and not problems and not missing and checkpoint["status"] in _TRUSTED_CHECKPOINTS
    return {
        "verified": verified,
        "scope": "partitions",
        "rows_used": wanted,
        "rows_located": located,
        "rows_missing": missing,
        "partitions": partitions,
        "problems": problems,
        "checkpoint": {k: checkpoint.get(k) for k in ("status", "message", "key_id", "checkpoints", "latest")},
        "statement": statement(verified, wanted, located, missing, partitions, problems, checkpoint),
    }


def statement(verified: bool, wanted: int, located: int, missing: int, partitions: Sequence[dict[str, Any]],
              problems: Sequence[dict[str, Any]], checkpoint: dict[str, Any]) -> str:
    """One paragraph saying what was checked and what was found."""
    if not wanted:
        return "This report relies on no stored lineage rows; there was nothing to verify."
    where = ", ".join(f"{p['topic']}[{p['partition']}]" for p in partitions) or "none"
    head = (f"Checked: the hash chains of the {len(partitions)} partition(s) holding the {located} row(s) this report "
            f"used ({where}), each walked whole from its start, and against the signed checkpoints.")
    parts = [head]
    if missing:
        parts.append(f"{missing} of the {wanted} row(s) used are not in the hash-chained logs.")
    if problems:
        kinds = sorted({str(p.get("problem")) for p in problems})
        parts.append(f"{len(problems)} problem(s) found in those partitions ({', '.join(kinds)}).")
    parts.append(f"Signed checkpoints: {checkpoint.get('status')}"
                 + (f" ({checkpoint['message']})" if checkpoint.get("message") else "") + ".")
    parts.append("Result: VERIFIED." if verified else "Result: NOT VERIFIED.")
    return " ".join(parts)
