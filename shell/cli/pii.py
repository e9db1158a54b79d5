"""`lineage flag`, `lineage snapshot get`, `lineage erase`: operator actions on PII, all audited.

The audit log records the local administrator (``local:<os user>``) as who acted: on this path who
acts is the person at the store's machine, never a name typed on the command line. Decrypt and
erase run as a key holder (this process reads the KEK and the pseudonym key); flag needs neither.
"""
from __future__ import annotations

import json
from typing import Any

import typer

from lineage.settings import Settings, load_settings

snapshot_app = typer.Typer(help="Encrypted feature snapshots.", no_args_is_help=True)


def _data_keys(settings: Settings) -> Any:
    import redis

    from lineage.pii.keys import DataKeys

    return DataKeys.from_settings(settings, redis.Redis.from_url(settings.redis_url, socket_timeout=30))


def _print(data: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


@snapshot_app.command("get")
def snapshot_get(
    pointer: str = typer.Argument(..., help="Snapshot pointer from the lineage (pii-store:v1/...)."),
    reason: str = typer.Option(..., "--reason", help="Why you need the plaintext (recorded in the audit log)."),
    sha256: str = typer.Option(None, "--sha256", help="Expected digest from the lineage; refuse on mismatch."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Decrypt one feature snapshot; the audit record (who, when, why, outcome) is written first."""
    from sinks.access.audit import open_trail
    from sinks.access.roles import Actor
    from lineage.pii.store import LocalOpener, SnapshotStore
    from sinks.pii.operations import get_snapshot

    settings = load_settings()
    opener = LocalOpener(_data_keys(settings), SnapshotStore.from_settings(settings))
    with open_trail(settings) as trail:
        out = get_snapshot(settings, pointer, Actor.local(), reason, sha256, audit=trail, opener=opener)
    _print(out, as_json, json.dumps(out["snapshot"], indent=2, sort_keys=True))


def flag(
    prediction: str = typer.Option(..., "--prediction", help="Prediction id to give full lineage."),
    reason: str = typer.Option("flagged for review", "--reason", help="Why (recorded in the audit log)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Promote a prediction's held snapshot to full lineage; later predictions of its subject are captured in full."""
    from sinks.access.audit import open_trail
    from sinks.access.roles import Actor
    from sinks.pii.operations import flag_prediction

    settings = load_settings()
    with open_trail(settings) as trail:
        out = flag_prediction(settings, prediction, Actor.local(), reason, audit=trail)
    state = "already flagged" if out["already_flagged"] else "flagged"
    _print(out, as_json, f"{prediction}: {state}; snapshot {out['snapshot_pointer']} sha256 {out['snapshot_sha256']}")


def erase(
    subject: str = typer.Option(..., "--subject", help="Data subject id whose snapshots must become unreadable."),
    reason: str = typer.Option("erasure request", "--reason", help="Why (recorded in the audit log)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Destroy the subject's data key (crypto-shredding), have Redis rewrite its files without it,
    record the erasure and report what became unreadable."""
    from sinks.access.audit import open_trail
    from sinks.access.roles import Actor
    from sinks.pii.operations import erase_subject

    settings = load_settings()
    keys = _data_keys(settings)
    with open_trail(settings) as trail:
        out = erase_subject(settings, subject, Actor.local(), reason, audit=trail, keys=keys)
    state = "data key destroyed" if out["key_destroyed"] else "no data key existed; erasure recorded"
    gone, disk = out["unreadable"], out["persistence"]
    if disk["verified_absent"]:
        checked = "; Redis's files rewritten, its bytes are gone from them"
    elif out["key_destroyed"]:
        checked = "; Redis's files rewritten (not on this machine: not checked)"
    else:
        checked = ""
    _print(out, as_json, (
        f"subject {out['subject_ref']}: {state} at {out['erased_at']}{checked}\n"
        f"unreadable now: {gone['stored_snapshots']} stored snapshot(s), {gone['held_records']} held record(s), "
        f"{gone['dead_letters']} dead letter(s)"))
