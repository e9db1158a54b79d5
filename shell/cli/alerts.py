"""`lineage alerts`: active and recent alerts, read through the sink's API (ClickHouse `alerts`)."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any

import typer

from lineage.exceptions import LineageError
from lineage.settings import load_settings

SQL = """
SELECT a.fingerprint AS fingerprint, a.alert_name AS alert_name, argMax(a.state, a.updated_at) AS state,
       any(a.severity) AS severity, any(a.labels) AS labels, argMax(a.summary, a.updated_at) AS summary,
       a.starts_at AS starts_at, max(a.ends_at) AS ended_at
FROM alerts AS a FINAL
GROUP BY a.fingerprint, a.alert_name, a.starts_at
HAVING a.starts_at >= {since:DateTime64(3, 'UTC')} OR state = 'firing'
ORDER BY a.starts_at DESC
LIMIT {limit:UInt32}
"""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d` (ago) or an ISO timestamp."""
    now = now or datetime.now(timezone.utc)
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - timedelta(**{unit: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"--since: {text!r} is neither like 30m/2h/7d nor an ISO timestamp") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def fetch(api_url: str, since: datetime, limit: int) -> list[dict[str, Any]]:
    body = json.dumps({"sql": SQL, "params": {"since": since.strftime("%Y-%m-%d %H:%M:%S"), "limit": limit}}).encode()
    req = urllib.request.Request(f"{api_url}/api/sql", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            res = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise LineageError(f"sink API {api_url} refused the alerts query: {exc.read().decode()[:300]}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LineageError(f"sink API {api_url} is not answering ({exc}); is `lineage sink` running?") from None
    return [dict(zip(res["columns"], row)) for row in res["rows"]]


def alerts(
    active: bool = typer.Option(False, "--active", help="Only alerts still firing."),
    since: str = typer.Option("24h", "--since", help="Alerts started since (30m, 2h, 7d or ISO time)."),
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many alerts."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """List active and recent completeness and queue-depth alerts."""
    settings = load_settings()
    rows = fetch(settings.api_url, parse_since(since), limit)
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
