"""`lineage deadletters list|open`: what the pipeline refused, and (audited) what it was."""
from __future__ import annotations

import base64
import json
import os
import sys
from datetime import datetime, timezone

import typer

from lineage.settings import load_settings

app = typer.Typer(help="Dead letters: events the pipeline refused, with the reason.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="How many of the newest to show."),
    reason: str = typer.Option(None, "--reason", help="Only this reason code (e.g. unsealed_pii, bad_id)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The newest dead letters: where they came from, why, and whether their content is sealed (never the content)."""
    from sinks.pii.deadletters import list_dead_letters

    rows = list_dead_letters(load_settings(), limit, reason)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no dead letters")
        return
    print(f"{'time (UTC)':<20} {'at':<10} {'reason':<18} {'content':<8} source / detail")
    for r in rows:
        when = datetime.fromtimestamp(r["ts"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        content = "erased" if r["erased"] else "sealed" if r["sealed"] else "clear"
        print(f"{when:<20} {r['partition']}@{r['offset']:<8} {r['reason']:<18} {content:<8} {r['source']}  {r['detail'][:80]}")


@app.command("open")
def open_cmd(
    at: str = typer.Argument(..., help="PARTITION@OFFSET on the dead-letter topic (from `deadletters list`)."),
    reason: str = typer.Option(..., "--reason", help="Why you need the content (recorded in the audit log)."),
    output: str = typer.Option(None, "--output", "-o", help="Write the original bytes to this file (default: stdout)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the bytes base64-encoded)."),
) -> None:
    """Decrypt one dead letter's original bytes; the audit record (who, when, why, outcome) is written first."""
    from sinks.access.audit import open_trail
    from sinks.access.roles import Actor
    from sinks.pii.deadletters import open_one

    part, sep, off = at.partition("@")
    if not sep or not part.isdigit() or not off.isdigit():
        raise typer.BadParameter(f"expected PARTITION@OFFSET such as 0@42, got {at!r}", param_hint="AT")
    import redis

    from lineage.pii.keys import DataKeys

    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    try:
        with open_trail(settings) as trail:  # this process is a key holder: it reads the KEK
            out = open_one(settings, int(part), int(off), Actor.local(), reason, audit=trail,
                           keys=DataKeys.from_settings(settings, client))
    finally:
        client.close()
    value: bytes = out.pop("value")
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as fh:
            fh.write(value)
    if as_json:
        print(json.dumps({**out, "value_base64": None if output else base64.b64encode(value).decode()}, indent=2))
    elif not output:
        sys.stdout.buffer.write(value + (b"" if value.endswith(b"\n") else b"\n"))
    else:
        print(f"{len(value)} bytes written to {output} (mode 0600)")
