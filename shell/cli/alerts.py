"""`lineage alerts`: active and recent alerts from ClickHouse's `alerts` table (through the sink's API
with the CLI's key, or the store directly when no sink runs)."""
from __future__ import annotations

import json
from typing import Any

import typer

from lineage.settings import Settings, load_settings

SQL = """
SELECT a.fingerprint AS fingerprint, a.alert_name AS alert_name, argMax(a.state, a.updated_at) AS state,
       any(a.severity) AS severity, any(a.labels) AS labels, argMax(a.summary, a.updated_at) AS summary,
       a.starts_at AS starts_at, max(a.ends_at) AS ended_at
FROM alerts AS a FINAL
GROUP BY a.fingerprint, a.alert_name, a.starts_at
HAVING a.starts_at >= {since:DateTime64(6, 'UTC')} OR state = 'firing'
ORDER BY a.starts_at DESC
LIMIT {limit:UInt32}
"""


def fetch(settings: Settings, since: str, limit: int) -> list[dict[str, Any]]:
    """Alerts started at or after ``since`` (``30m``, ``2h``, ``7d`` ago or an ISO time) or still firing."""
    from sinks.clickhouse.backend import open_backend
    from sinks.clickhouse.queries import parse_since

    when = parse_since(since)  # a bad value is a one-line error before anything is opened
    backend = open_backend(settings)
    try:
        res = backend.sql(SQL, params={"since": when, "limit": limit})
    finally:
        backend.close()
    return res.dicts()


def alerts(
    active: bool = typer.Option(False, "--active", help="Only alerts still firing."),
    since: str = typer.Option("24h", "--since", help="Alerts started since (30m, 2h, 7d or ISO time)."),
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many alerts."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """List active and recent completeness and queue-depth alerts."""
    settings = load_settings()
    rows = fetch(settings, since, limit)
    if active:
        rows = [r for r in rows if r["state"] == "firing"]
    if as_json:
        print(json.dumps(rows, default=str, indent=None))
        return
    if not rows:
        print("no alerts" + (" firing" if active else f" since {since}"))
        return
    for r in rows:
        labels = ",".join(f"{k}={v}" for k, v in sorted((r.get("labels") or {}).items()))
        print(f"{r['state']:<8} {r['severity']:<8} {str(r['starts_at'])[:19]:<19} {r['alert_name']:<28} {labels}")
        print(f"         {r['summary']}")
