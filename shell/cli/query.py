"""`lineage query ...`, `lineage sql`, `lineage verify`: analyst and auditor questions.

Each query is a documented SQL file in ``sinks/queries/``; these commands bind its parameters
and run it read-only, through the running sink's API or on the store directly.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import typer

from lineage.settings import load_settings

app = typer.Typer(help="Lineage questions: provenance, impact, diff, completeness.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print a JSON array of row objects.")
_REASON = typer.Option("", "--reason", help="Why you ask (recorded in the audit log; required for auditor and investigator keys).")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def emit(columns: Sequence[str], rows: Sequence[Sequence[Any]], as_json: bool, title: str = "") -> None:
    if as_json:
        print(json.dumps([{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    Console(width=max(160, Console().width)).print(table)
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=sys.stderr)


def _run(name: str, params: dict[str, Any], as_json: bool, title: str = "", reason: str = "") -> int:
    from sinks.clickhouse.backend import open_backend

    backend = open_backend(load_settings())
    try:
        res = backend.named(name, params, reason)
    finally:
        backend.close()
    emit(res.columns, res.rows, as_json, title)
    return len(res.rows)


@app.command("prediction")
def prediction(
    prediction_id: str = typer.Argument(..., help="Prediction id."),
    depth: int = typer.Option(12, "--depth", min=1, max=100, help="Hops to follow upstream."),
    as_json: bool = _JSON,
    reason: str = _REASON,
) -> None:
    """Backward provenance of one prediction: model version, training run, feature sets, datasets, sources."""
    n = _run("prediction", {"prediction_id": prediction_id, "max_depth": depth}, as_json,
             f"provenance of prediction {prediction_id}", reason)
    if n == 0 and not as_json:
        print(f"no lineage recorded for prediction {prediction_id}", file=sys.stderr)


def _graph(direction: str, namespace: str, name: str, node_type: str, depth: int, since: str | None,
           until: str | None, as_of: str | None, as_json: bool, reason: str) -> None:
    params = {"namespace": namespace, "name": name, "node_type": node_type, "max_depth": depth,
              "since": since, "until": until, "as_of": as_of}
    _run(direction, params, as_json, f"{direction} of {namespace}/{name}" if namespace else f"{direction} of {name}",
         reason)


_NS = typer.Option("", "--namespace", help="Node namespace (dataset source URI, job namespace; '' for models/feature sets).")
_NAME = typer.Option(..., "--name", help="Node name (table, job, model, feature set).")
_TYPE = typer.Option("", "--type", help="Only start nodes of this type (dataset, job, model, model_version, feature_set...).")
_DEPTH = typer.Option(10, "--depth", min=1, max=100, help="Hops to follow.")
_SINCE = typer.Option(None, "--since", help="Start of the window for the start node's own edges (ISO 8601, UTC).")
_UNTIL = typer.Option(None, "--until", help="End of that window (ISO 8601, UTC).")
_ASOF = typer.Option(None, "--as-of", help="Answer as the graph stood at this time (ISO 8601, UTC).")


@app.command("upstream")
def upstream(namespace: str = _NS, name: str = _NAME, node_type: str = _TYPE, depth: int = _DEPTH,
             since: str | None = _SINCE, until: str | None = _UNTIL, as_of: str | None = _ASOF,
             as_json: bool = _JSON, reason: str = _REASON) -> None:
    """Everything a node was derived from."""
    _graph("upstream", namespace, name, node_type, depth, since, until, as_of, as_json, reason)


@app.command("downstream")
def downstream(namespace: str = _NS, name: str = _NAME, node_type: str = _TYPE, depth: int = _DEPTH,
               since: str | None = _SINCE, until: str | None = _UNTIL, as_of: str | None = _ASOF,
               as_json: bool = _JSON, reason: str = _REASON) -> None:
    """Everything derived from a node (forward impact), e.g. of a table's records in a date range."""
    _graph("downstream", namespace, name, node_type, depth, since, until, as_of, as_json, reason)


@app.command("columns")
def columns(
    namespace: str = typer.Option(..., "--namespace", help="Dataset namespace (source URI, e.g. hdfs://namenode:8020)."),
    name: str = typer.Option(..., "--name", help="Dataset name (table or path)."),
    column: str = typer.Option("", "--column", help="One column; all columns of the dataset when left out."),
    direction: str = typer.Option("upstream", "--direction",
                                  help="upstream: the columns it is computed from; downstream: the columns computed from it."),
    depth: int = _DEPTH,
    as_of: str | None = _ASOF,
    as_json: bool = _JSON,
    reason: str = _REASON,
) -> None:
    """Column-level lineage (OpenLineage columnLineage), multi-hop, with transformation type, subtype and masking per hop."""
    if direction not in ("upstream", "downstream"):
        raise typer.BadParameter("must be upstream or downstream", param_hint="--direction")
    target = f"{namespace}/{name}" + (f".{column}" if column else "")
    n = _run("columns", {"namespace": namespace, "name": name, "column": column, "direction": direction,
                         "max_depth": depth, "as_of": as_of}, as_json, f"column lineage {direction} of {target}", reason)
    if n == 0 and not as_json:
        print(f"no column lineage recorded {direction} of {target}", file=sys.stderr)


@app.command("run")
def run(
    run_id: str = typer.Argument(..., help="The run's id (OpenLineage runId)."),
    depth: int = typer.Option(20, "--depth", min=1, max=100, help="Parent/child hops to follow each way."),
    as_json: bool = _JSON,
    reason: str = _REASON,
) -> None:
    """A run's place in its hierarchy (root, ancestors, children: e.g. DAG run -> task -> Spark app -> Spark job), its events and datasets."""
    n = _run("run", {"run_id": run_id, "max_depth": depth}, as_json, f"run {run_id}", reason)
    if n <= 1 and not as_json:
        print(f"nothing recorded about run {run_id} beyond its id", file=sys.stderr)


@app.command("diff")
def diff(
    model: str = typer.Option(..., "--model", help="Model name."),
    from_version: str = typer.Option(..., "--from", help="Old version."),
    to_version: str = typer.Option(..., "--to", help="New version."),
    as_json: bool = _JSON,
    reason: str = _REASON,
) -> None:
    """What changed between two versions of a model: data versions, features, code, hyperparameters."""
    _run("diff", {"model": model, "from_version": from_version, "to_version": to_version}, as_json,
         f"{model}: {from_version} -> {to_version}", reason)


@app.command("completeness")
def completeness(model: str = typer.Option(..., "--model", help="Model name."), as_json: bool = _JSON,
                 reason: str = _REASON) -> None:
    """Share of a model's predictions and versions with full lineage."""
    _run("completeness", {"model": model}, as_json, f"lineage completeness of {model}", reason)


@app.command("sources")
def sources(
    model: str = typer.Option(..., "--model", help="Model name."),
    since: str | None = typer.Option(None, "--since", help="Predictions from (ISO 8601, UTC)."),
    until: str | None = typer.Option(None, "--until", help="Predictions until (ISO 8601, UTC)."),
    depth: int = typer.Option(12, "--depth", min=1, max=100, help="Hops to follow upstream."),
    as_json: bool = _JSON,
    reason: str = _REASON,
) -> None:
    """Audit: which source datasets (and versions) contributed to a model's predictions in a window."""
    _run("sources", {"model": model, "since": since, "until": until, "max_depth": depth}, as_json,
         f"sources behind {model} predictions", reason)


def sql(
    statement: str = typer.Argument(..., help="One read-only statement (SELECT, WITH, SHOW TABLES, DESCRIBE, EXPLAIN), judged by the SQL sandbox."),
    as_json: bool = _JSON,
    reason: str = _REASON,
) -> None:
    """Run read-only SQL against the configured ClickHouse (embedded or server), audited."""
    from sinks.clickhouse.backend import open_backend

    backend = open_backend(load_settings())
    try:
        res = backend.sql(statement, reason)
    finally:
        backend.close()
    emit(res.columns, res.rows, as_json)


def verify(
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object (ok, chains, problems, checkpoint)."),
    reason: str = _REASON,
    require_checkpoint: bool = typer.Option(
        False, "--require-checkpoint", help="Also fail (exit 1) when no signed checkpoint or no public key is found."),
) -> None:
    """Check the raw log and the query audit log: their hash chains (altered, missing or duplicated
    rows) and the checkpoints signed by the sink (rewritten rows and heads, deleted partitions,
    checkpoints signed by another key). Exit 1 if anything is reported."""
    from sinks.clickhouse.backend import open_backend
    from sinks.clickhouse.verify_report import build_report

    settings = load_settings()
    backend = open_backend(settings)
    try:
        report = build_report(lambda name, params: backend.named(name, params, reason), settings)
    finally:
        backend.close()
    checkpoint = report["checkpoint"]
    failed = not report["ok"] or (require_checkpoint and checkpoint["status"] != "valid")
    if as_json:
        print(json.dumps(_jsonable(report), indent=2))
    else:
        if report["problems"]:
            columns = list(report["problems"][0])
            emit(columns, [[p[c] for c in columns] for p in report["problems"]], False, "tamper evidence problems")
        else:
            chains = report["chains"]
            order = sorted(chains, key=lambda name: (name != "raw_events", name))  # the raw log first
            print("hash chains intact: " + ", ".join(_chain_line(name, chains[name]) for name in order))
        status = checkpoint["status"]
        if status == "valid":
            latest = checkpoint["latest"]
            verdict = "rows differ from them" if report["problems"] else "rows match"
            print(f"signed checkpoints: {checkpoint['message']}, latest {latest['seq']} at {latest['time']}; {verdict}")
        elif status in ("refused", "unverifiable"):
            print(f"signed checkpoints {status.upper()}: {checkpoint['message']}")
        else:
            print(f"signed checkpoints: {checkpoint['message']}")
    if failed:
        raise typer.Exit(1)


def _chain_line(name: str, chain: dict[str, int]) -> str:
    """``raw_events 48 rows in 3 partitions``."""
    rows, parts = chain["rows"], chain["partitions"]
    return f"{name} {rows} row{'s' if rows != 1 else ''} in {parts} partition{'s' if parts != 1 else ''}"
