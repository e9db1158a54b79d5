"""What each report says, gathered from the store: the named queries where they answer the
question (``prediction``, ``downstream``, ``completeness``), the ``inference_lineage_resolved``
view for predictions, and the hash-chain check of `lineage verify` for the rows used.

Nothing here renders or audits: :mod:`sinks.reports.service` does, once for the whole report.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sinks.access.roles import Actor
from sinks.clickhouse.client import QueryResult
from sinks.exceptions import QueryError
from sinks.reports.integrity import Evidence, check_rows
from sinks.reports.model import new_report, plain, section

if TYPE_CHECKING:
    from lineage.settings import Settings

Run = Callable[[str, dict[str, Any]], QueryResult]


class ReportNotFound(QueryError):
    """Nothing is recorded about what the report asks for (the HTTP route answers 404)."""


@dataclass
class Source:
    """Where a report reads from: ``named`` runs a named query (``sinks/queries``) read-only,
    ``query`` runs this module's own read-only statements; ``erased_at`` gives the time an erased
    subject's key was destroyed (its tombstone), ``sealed`` the subject's sealed records still in
    the encrypted store and on the hold topic (``stored_snapshots``, ``held_records``)."""

    settings: Settings
    named: Run
    query: Run
    erased_at: Callable[[str], str | None] | None = None
    sealed: Callable[[str], Mapping[str, int]] | None = None


_PREDICTION = """
SELECT prediction_id, event_id, event_time, model_name, model_version, endpoint, decision_type, risk_score,
       regulatory_class, training_run_id, feature_sets, tier, tier_reason, snapshot_pointer, snapshot_sha256,
       lineage_complete, unknown_model_version, late_bound, subject_ref
FROM inference_lineage_resolved
WHERE prediction_id = {prediction:String}
ORDER BY event_time DESC
LIMIT 1
"""

_TRAINING = """
SELECT run_id, argMax(job, event_time) AS job, argMax(event_type, event_time) AS state, max(event_time) AS last_event, argMax(code_version, event_time) AS code_version,
       argMax(artifact_digest, event_time) AS artifact_digest, argMax(hyperparameters, event_time) AS hyperparameters,
       argMax(dataset_digests, event_time) AS dataset_digests, argMax(feature_sets, event_time) AS feature_sets
FROM training_runs FINAL
WHERE run_id = {run:String}
GROUP BY run_id
"""

_PATH_EDGES = "SELECT event_id FROM edges WHERE dst IN {nodes:Array(String)} AND src IN {nodes:Array(String)}"


def _snapshot_status(row: Mapping[str, Any], erased: bool) -> str:
    if not row["snapshot_pointer"]:
        if row["tier"] == "routine":
            return "none kept (routine prediction: lineage without a feature snapshot)"
        return "none stored (a held snapshot may still be on the hold topic until its retention passes)"
    if erased:
        return "stored encrypted, now unreadable: the subject's data key was destroyed (erasure)"
    return "stored encrypted (readable by investigators with a reason; every decrypt is audited)"


def provenance(src: Source, params: Mapping[str, str], actor: Actor) -> dict[str, Any]:
    pid = params["prediction"]
    report = new_report("provenance", f"Provenance of prediction {pid}",
                        f"Which data, processed how, produced the model that made prediction {pid}?", params, actor)
    found = src.query(_PREDICTION, {"prediction": pid}).dicts()
    if not found:
        raise ReportNotFound(f"no prediction {pid!r} is recorded")
    pred = found[0]
    path = src.named("prediction", {"prediction_id": pid}).dicts()
    training = src.query(_TRAINING, {"run": pred["training_run_id"]}).dicts() if pred["training_run_id"] else []
    erased = bool(src.erased_at(pred["subject_ref"])) if src.erased_at else False
    downstream_of = {r["downstream_node"] for r in path}
    sources = [r for r in path if r["node_type"] == "dataset" and r["node_id"] not in downstream_of]
    datasets = [r for r in path if r["node_type"] == "dataset"]
    status = _snapshot_status(pred, erased)
    run = training[0] if training else None
    report["data"] = {"prediction": plain({k: v for k, v in pred.items() if k != "subject_ref"}),
                      "training_run": plain(run), "path": plain(path),
                      "source_tables": plain([{k: r[k] for k in ("namespace", "name", "version")} for r in sources]),
                      "snapshot_status": status}
    report["summary"] = [
        f"Prediction {pid} was made at {plain(pred['event_time'])} by model {pred['model_name']} version "
        f"{pred['model_version']} ({pred['endpoint'] or 'endpoint not recorded'}): decision {pred['decision_type']}, "
        f"risk score {pred['risk_score']}.",
        (f"Model version {pred['model_version']} was trained by run {pred['training_run_id']}"
         + (f" (job {run['job']}, code {run['code_version']}, {run['state']})." if run else ".")
         if pred["training_run_id"] else f"No training run is recorded for model version {pred['model_version']}."),
        "Feature sets: " + (", ".join(pred["feature_sets"]) or "none recorded") + ".",
        "Source tables: " + ("; ".join(f"{r['namespace']}/{r['name']} version {r['version'] or '(unversioned)'}"
                                       for r in sources) or "none reached") + ".",
        f"Sampling tier: {pred['tier']} ({pred['tier_reason'] or 'no reason recorded'}). Snapshot: {status}.",
        "Lineage complete." if pred["lineage_complete"] else "Lineage INCOMPLETE for this prediction.",
    ]
    report["sections"] = [
        section("Prediction", ["field", "value"], [
            ["prediction id", pid], ["time", pred["event_time"]], ["model", pred["model_name"]],
            ["model version", pred["model_version"]], ["endpoint", pred["endpoint"]],
            ["decision", pred["decision_type"]], ["risk score", pred["risk_score"]],
            ["regulatory class", pred["regulatory_class"]], ["training run", pred["training_run_id"] or "(none)"],
            ["feature sets", ", ".join(pred["feature_sets"])], ["sampling tier", pred["tier"]],
            ["tier reason", pred["tier_reason"]], ["snapshot", status],
            ["snapshot sha256", pred["snapshot_sha256"] or "(none)"],
            ["lineage complete", "yes" if pred["lineage_complete"] else "no"],
            ["bound late to its training run", "yes" if pred["late_bound"] else "no"]]),
        section("Training run", ["field", "value"], [
            ["run id", run["run_id"]], ["job", run["job"]], ["state", run["state"]],
            ["last event", run["last_event"]], ["code version", run["code_version"]],
            ["artifact digest", run["artifact_digest"]], ["hyperparameters", run["hyperparameters"]],
            ["dataset digests", run["dataset_digests"]], ["feature sets", ", ".join(run["feature_sets"])]]
            if run else [], "" if run else "no training run recorded"),
        section("Source tables", ["namespace", "name", "version"],
                [[r["namespace"], r["name"], r["version"]] for r in sources]),
        section("Datasets on the way", ["depth", "namespace", "name", "version", "read by", "at"],
                [[r["depth"], r["namespace"], r["name"], r["version"], r["downstream_node"], r["edge_time"]]
                 for r in datasets]),
        section("Provenance chain (nearest first)",
                ["depth", "node", "type", "version", "edge", "into", "run", "time"],
                [[r["depth"], r["node_id"], r["node_type"], r["version"], r["edge_type"], r["downstream_node"],
                  r["run_id"], r["edge_time"]] for r in path]),
    ]
    nodes = sorted({r["node_id"] for r in path} | downstream_of)
    evidence = [Evidence("raw_events", _PATH_EDGES, {"nodes": nodes}),
                Evidence("raw_events", "SELECT {e:String} AS event_id", {"e": pred["event_id"]})]
    if run:
        evidence.append(Evidence("raw_events", "SELECT event_id FROM training_runs WHERE run_id = {run:String}",
                                 {"run": run["run_id"]}))
    report["integrity"] = check_rows(src.settings, src.named, src.query, evidence)
    return report


def impact(src: Source, params: Mapping[str, str], actor: Actor) -> dict[str, Any]:
    ns, name = params.get("namespace", ""), params["name"]
    target = f"{ns}/{name}" if ns else name
    window = (f" between {params.get('since', 'the beginning')} and {params.get('until', 'now')}"
              if "since" in params or "until" in params else "")
    report = new_report("impact", f"Impact of {target}",
                        f"What is downstream of {target}{window}: jobs, datasets, models, model versions, predictions?",
                        params, actor)
    q = {"namespace": ns, "name": name, "since": params.get("since"), "until": params.get("until")}
    rows = src.named("downstream", q).dicts()
    if not rows:
        report["summary"] = [f"Nothing recorded is downstream of {target}{window}."]
    preds = [r for r in rows if r["node_type"] == "prediction"]
    others = [r for r in rows if r["node_type"] != "prediction"]
    by_version = Counter(r["upstream_node"] for r in preds)
    kinds = Counter(r["node_type"] or "(unknown)" for r in others)
    versions = sorted({r["node_id"] for r in others if r["node_type"] == "model_version"})
    report["data"] = {"nodes": plain(others), "predictions_by_model_version": dict(by_version),
                      "predictions": len(preds), "counts": dict(kinds)}
    if rows:
        report["summary"] = [
            f"{len({r['node_id'] for r in others})} node(s) downstream of {target}{window}: "
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ".",
            "Model versions affected: " + (", ".join(v.split(":", 1)[1] for v in versions) or "none") + ".",
            f"Predictions affected: {len(preds)}"
            + (" (" + ", ".join(f"{v.split(':', 1)[1]}: {n}" for v, n in sorted(by_version.items())) + ")" if preds else "")
            + ".",
        ]
    report["sections"] = [
        section("Predictions by model version", ["model version", "predictions"],
                [[v.split(":", 1)[1], n] for v, n in sorted(by_version.items())]),
        section("Downstream nodes (nearest first)", ["depth", "type", "namespace", "name", "version", "edge", "from",
                                                      "run", "time"],
                [[r["depth"], r["node_type"], r["namespace"], r["name"], r["version"], r["edge_type"],
                  r["upstream_node"], r["run_id"], r["edge_time"]] for r in others]),
    ]
    nodes = sorted({r["node_id"] for r in rows} | {r["upstream_node"] for r in rows})
    report["integrity"] = check_rows(src.settings, src.named, src.query,
                                     [Evidence("raw_events", _PATH_EDGES, {"nodes": nodes})] if rows else [])
    return report


_WINDOWED = """
SELECT model_version, toStartOfDay(event_time) AS day, count() AS predictions,
       countIf(lineage_complete = 1) AS with_lineage, round(with_lineage / predictions, 4) AS share,
       countIf(tier = 'full') AS full_tier
FROM inference_lineage_resolved
WHERE model_name = {model:String} AND event_time >= {since:DateTime64(6, 'UTC')}
GROUP BY model_version, day
ORDER BY day, model_version
"""

_MODEL_ROWS = """
SELECT event_id FROM inference_lineage WHERE model_name = {model:String} AND event_time >= {since:DateTime64(6, 'UTC')}
UNION ALL
SELECT event_id FROM training_runs WHERE model_name = {model:String}
"""


def completeness(src: Source, params: Mapping[str, str], actor: Actor) -> dict[str, Any]:
    model = params["model"]
    since = params.get("since", "1970-01-01 00:00:00.000000")
    report = new_report("completeness", f"Lineage completeness of {model}",
                        f"What share of model {model}'s predictions has full lineage, by version and day"
                        + (f", since {params['since']}" if "since" in params else "") + "?", params, actor)
    overall = src.named("completeness", {"model": model}).dicts()
    windowed = src.query(_WINDOWED, {"model": model, "since": since}).dicts()
    if not overall or all(r["versions"] == 0 for r in overall):
        raise ReportNotFound(f"no model {model!r} is recorded")
    total = next((r for r in overall if r["model_version"] == "(all)"), overall[-1])
    n = sum(r["predictions"] for r in windowed)
    ok = sum(r["with_lineage"] for r in windowed)
    report["data"] = {"by_version": plain(overall), "by_version_and_day": plain(windowed)}
    report["summary"] = [
        f"All time: {total['full_lineage_predictions']} of {total['predictions']} prediction(s) "
        f"({float(total['prediction_share']):.2%}) have full lineage; {total['versions_with_training_lineage']} of "
        f"{total['versions']} version(s) have training lineage.",
        f"In the window: {ok} of {n} prediction(s) " + (f"({ok / n:.2%}) " if n else "") + "have full lineage.",
    ]
    report["sections"] = [
        section("By model version (all time)",
                ["model version", "predictions", "full lineage", "share", "versions", "with training lineage",
                 "full tier"],
                [[r["model_version"], r["predictions"], r["full_lineage_predictions"], r["prediction_share"],
                  r["versions"], r["versions_with_training_lineage"], r["full_tier_predictions"]] for r in overall]),
        section("By model version and day (window)", ["model version", "day", "predictions", "full lineage", "share",
                                                       "full tier"],
                [[r["model_version"], r["day"], r["predictions"], r["with_lineage"], r["share"], r["full_tier"]]
                 for r in windowed]),
    ]
    report["integrity"] = check_rows(src.settings, src.named, src.query,
                                     [Evidence("raw_events", _MODEL_ROWS, {"model": model, "since": since})])
    return report


_SUBJECT = """
SELECT prediction_id, event_id, event_time, model_name, model_version, decision_type, tier, snapshot_pointer,
       snapshot_sha256
FROM inference_lineage_resolved
WHERE subject_ref = {ref:String}
ORDER BY event_time
"""

_ERASURES = """
SELECT audit_id, ts, who, role, via, reason, outcome, details
FROM query_audit
WHERE action = 'erase' AND what = {ref:String}
ORDER BY ts
"""


def erasure(src: Source, params: Mapping[str, str], actor: Actor) -> dict[str, Any]:
    ref = params["subject_ref"]
    report = new_report("erasure", f"Erasure of data subject {ref}",
                        f"What was predicted about data subject {ref} (pseudonymous reference), with which model "
                        "versions, which feature snapshots were held, and were they destroyed?", params, actor)
    preds = src.query(_SUBJECT, {"ref": ref}).dicts()
    records = src.query(_ERASURES, {"ref": ref}).dicts()
    state = dict(src.sealed(ref)) if src.sealed else {}
    erased_at = src.erased_at(ref) if src.erased_at else None
    pointers = [p for p in preds if p["snapshot_pointer"]]
    stored, held = state.get("stored_snapshots"), state.get("held_records")
    versions = sorted({f"{p['model_name']}@{p['model_version']}" for p in preds})
    report["data"] = {"subject_ref": ref, "predictions": plain(preds), "model_versions": versions,
                      "erasure_records": plain(records), "erased_at": erased_at,
                      "snapshots_in_lineage": len(pointers), "stored_snapshots": stored, "held_records": held,
                      "snapshots_unreadable": bool(erased_at)}
    counts = (f"{len(pointers)} snapshot pointer(s) in its lineage"
              + (f", {stored} sealed snapshot(s) in the encrypted store" if stored is not None else "")
              + (f", {held} record(s) on the hold topic" if held is not None else ""))
    if erased_at:
        verdict = (f"The subject was erased at {erased_at}: its data key was destroyed, so its snapshots are "
                   f"unreadable ({counts}).")
    else:
        verdict = f"The subject has not been erased: its snapshots are held encrypted and readable ({counts})."
    report["summary"] = [
        f"{len(preds)} prediction(s) were made about subject {ref}, by model version(s) "
        + (", ".join(versions) or "none") + ".",
        verdict,
        f"{len(records)} erasure record(s) in the query audit log." if records
        else "No erasure record in the query audit log.",
    ]
    report["sections"] = [
        section("Predictions about the subject", ["prediction", "time", "model", "version", "decision", "tier",
                                                  "snapshot"],
                [[p["prediction_id"], p["event_time"], p["model_name"], p["model_version"], p["decision_type"],
                  p["tier"], ("unreadable (erased) " if erased_at else "held ") + p["snapshot_pointer"]
                  if p["snapshot_pointer"] else "none"] for p in preds]),
        section("Erasure records (query audit log)", ["audit id", "time", "who", "role", "via", "reason", "outcome",
                                                      "details"],
                [[r["audit_id"], r["ts"], r["who"], r["role"], r["via"], r["reason"], r["outcome"], r["details"]]
                 for r in records]),
    ]
    evidence = [Evidence("raw_events", "SELECT event_id FROM inference_lineage WHERE subject_ref = {ref:String}",
                         {"ref": ref}),
                Evidence("query_audit", "SELECT audit_id FROM query_audit WHERE action = 'erase' AND what = {ref:String}",
                         {"ref": ref})]
    report["integrity"] = check_rows(src.settings, src.named, src.query, evidence)
    return report


BUILDERS: dict[str, Callable[[Source, Mapping[str, str], Actor], dict[str, Any]]] = {
    "provenance": provenance, "impact": impact, "completeness": completeness, "erasure": erasure,
}
