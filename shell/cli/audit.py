"""`lineage audit log`: the query audit log, newest first (who did what, when, why, with what outcome).

Read with the named query ``audit_log`` through the running sink's API, or on the store directly
like ``lineage query``. Also builds the audit trail the CLI's audited commands record through.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from lineage.settings import load_settings

if TYPE_CHECKING:
    from lineage.settings import Settings
    from sinks.access.audit import AuditTrail

app = typer.Typer(help="The query audit log: every query, decrypt, erase, flag and key operation.",
                  no_args_is_help=True)

#: Columns holding a JSON object (as text): printed as objects with --json.
_JSON_COLUMNS = ("params", "details")


def _check_action(action: str) -> str:
    from sinks.access.audit import ACTIONS

    if action and action not in ACTIONS:
        raise typer.BadParameter(f"unknown action {action!r}; one of {', '.join(sorted(ACTIONS))}")
    return action


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for col in _JSON_COLUMNS:
        if isinstance(out.get(col), str):
            try:
                out[col] = json.loads(out[col]) if out[col] else {}
            except ValueError:
                pass  # shown as stored: a record the sink kept although it is not JSON
    return out


@app.command("log")
def audit_log(
    since: str = typer.Option(None, "--since", help="Records since (30m, 2h, 7d ago, or an ISO time, UTC); default: all."),
    who: str = typer.Option("", "--who", help="Only this actor: a key name, or local:<os user>."),
    action: str = typer.Option("", "--action", callback=_check_action,
                               help="Only this action: sql, query, report, decrypt, erase, flag, key.create, key.revoke, key.rotate."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="At most this many records."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of record objects."),
) -> None:
    """Who did what, when, why, with what outcome, rows and duration: newest first."""
    from shell.cli.query import _jsonable, emit
    from sinks.clickhouse.backend import open_backend

    params = {"since": since, "who": who, "action": action, "limit": limit}
    backend = open_backend(load_settings())
    try:
        res = backend.named("audit_log", params)
    finally:
        backend.close()
    if as_json:
        rows = [_decoded(row) for row in res.dicts()]
        print(json.dumps([_jsonable(r) for r in rows], indent=2))
        return
    emit(res.columns, res.rows, False, "query audit log")
