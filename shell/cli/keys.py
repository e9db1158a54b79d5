"""`lineage keys create | list | revoke | rotate`: API keys with roles (the local administrator's path);
`lineage keys rotate-kek`: a new key-encryption key for the PII data keys.

Keys live in the deployment's Redis; the token is printed once and only its SHA-256 is kept.
``--save`` also stores it as the CLI's key for this checkout (``<data_dir>/credentials``, 0600).
Every create, revoke and rotate (refused ones too) is recorded in the query audit log as the
local administrator's, with the key's name, role and expiry, never its token; the token is
printed only after Kafka acknowledged that record.
"""
from __future__ import annotations

import getpass
import json
import time
from pathlib import Path

import redis
import typer

from lineage.keyspace import KeySpace
from lineage.settings import Settings, load_settings
from sinks.access.audit import open_trail
from sinks.access.audit import KEY_CREATE, KEY_REVOKE, KEY_ROTATE, Attempt, AuditTrail
from sinks.access.credentials import read_api_key, write_api_key
from sinks.access.keys import ApiKeys, KeyInfo, parse_expiry
from sinks.access.roles import Actor, Role
from sinks.exceptions import AccessError

app = typer.Typer(help="API keys with roles: create, list, revoke, rotate.", no_args_is_help=True)


def _keys(settings: Settings) -> ApiKeys:
    return ApiKeys(redis.Redis.from_url(settings.redis_url, socket_timeout=10), KeySpace.of(settings))


def _audited(trail: AuditTrail, action: str, name: str, **params: str) -> Attempt:
    """The operation on key ``name``, recorded with its outcome; AccessError is a refusal."""
    return trail.attempt(Actor.local(), action, name, params=params, refusals=(AccessError,))


def _describe(attempt: Attempt, info: KeyInfo) -> None:
    attempt.params.update(role=info.role.value, expires=_when(info.expires_at))
    attempt.rows = 1


def _save(token: str, info: KeyInfo) -> None:
    path = load_settings().credentials_path
    write_api_key(path, token)
    typer.echo(f"saved as this checkout's CLI key in {path} (mode 0600)", err=True)


def ensure_local_admin(settings: Settings) -> tuple[KeyInfo, bool]:
    """The admin key the CLI of this checkout uses, created (or re-issued, audited like
    `lineage keys`) if its token is missing or no longer valid; returns it and whether a new token
    was written."""
    keys = _keys(settings)
    current = read_api_key(settings)
    info = keys.authenticate(current) if current else None
    if info is not None:
        return info, False
    name = f"local-admin.{getpass.getuser()}"
    with open_trail(settings) as trail:
        try:
            with _audited(trail, KEY_CREATE, name, role=Role.ADMIN.value, expires="never") as attempt:
                token, info = keys.create(name, Role.ADMIN.value)
                _describe(attempt, info)
        except AccessError:  # the key exists but this checkout lost its token
            with _audited(trail, KEY_ROTATE, name) as attempt:
                token, info = keys.rotate(name)
                _describe(attempt, info)
    write_api_key(settings.credentials_path, token)
    return info, True


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _show(token: str | None, info: KeyInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**({"token": token} if token else {}), **info.to_json()}, sort_keys=True))
        return
    if token:
        print(token)
        typer.echo(f"key {info.name!r} ({info.role.value}), expires {_when(info.expires_at)}; "
                   "the token is shown once: store it now", err=True)
    else:
        print(f"key {info.name!r} ({info.role.value}) revoked")


@app.command("create")
def create(
    role: Role = typer.Option(..., "--role", help="emitter | analyst | auditor | investigator | admin."),
    name: str = typer.Option(..., "--name", help="Unique key name (recorded as 'who' in the audit log)."),
    expires: str = typer.Option("never", "--expires", help="Lifetime like 90d, 12h, 30m, or 'never'."),
    as_json: bool = typer.Option(False, "--json", help="Print {token, name, role, ...} as JSON."),
    save: bool = typer.Option(False, "--save", help="Also store the token as this checkout's CLI key (0600 file)."),
) -> None:
    """Create a key and print its token once."""
    settings = load_settings()
    with open_trail(settings) as trail:
        with _audited(trail, KEY_CREATE, name, role=role.value, expires=expires) as attempt:
            token, info = _keys(settings).create(name, role.value, parse_expiry(expires))
            _describe(attempt, info)
    _show(token, info, as_json)
    if save:
        _save(token, info)


@app.command("list")
def list_keys(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every key: name, role, created, expires (never a token)."""
    infos = _keys(load_settings()).list()
    if as_json:
        print(json.dumps([i.to_json() for i in infos], indent=2, sort_keys=True))
        return
    for i in infos:
        print(f"{i.name:32} {i.role.value:13} created {_when(i.created_at)}  expires {_when(i.expires_at)}")
    if not infos:
        print("no keys")


@app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="Key name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Revoke a key: its token stops working on the next request."""
    settings = load_settings()
    with open_trail(settings) as trail:
        with _audited(trail, KEY_REVOKE, name) as attempt:
            info = _keys(settings).revoke(name)
            _describe(attempt, info)
    _show(None, info, as_json)


@app.command("rotate")
def rotate(
    name: str = typer.Argument(..., help="Key name."),
    as_json: bool = typer.Option(False, "--json", help="Print the new {token, name, role, ...} as JSON."),
    save: bool = typer.Option(False, "--save", help="Also store the new token as this checkout's CLI key (0600 file)."),
) -> None:
    """Give a key a new token (same name and role); the old token stops working."""
    settings = load_settings()
    with open_trail(settings) as trail:
        with _audited(trail, KEY_ROTATE, name) as attempt:
            token, info = _keys(settings).rotate(name)
            _describe(attempt, info)
    _show(token, info, as_json)
    if save:
        _save(token, info)


@app.command("rotate-kek")
def rotate_kek(
    new_key_file: Path = typer.Option(None, "--new-key-file", help="Take the new KEK from this 0600 file "
                                      "(base64 or hex:..., 32 bytes) instead of generating one."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (counts re-wrapped, key ids)."),
) -> None:
    """Re-wrap every PII data key under a new KEK, then retire the old one (resumable; audited).

    Subject references do not change (they come from the pseudonym key). Running workers and the
    key holder pick up the new KEK by themselves."""
    import redis as redis_lib

    from lineage.pii.kek import decode_key, read_private
    from shell.kek_rotation import rotate_kek as rotate

    settings = load_settings()
    new_key = decode_key(read_private(new_key_file, "new KEK file").strip(), str(new_key_file)) if new_key_file else None
    client = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=30)
    with open_trail(settings) as trail:
        with trail.attempt(Actor.local(), KEY_ROTATE, "KEK") as attempt:
            out = rotate(settings, client, new_key)
            attempt.params.update(new_kek_id=out["new_kek_id"], retired=",".join(out["retired_kek_ids"]))
            attempt.rows = out["rewrapped"]
    if as_json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return
    print(f"KEK rotated to {out['new_kek_id']}{' (finished an interrupted rotation)' if out['resumed'] else ''}: "
          f"{out['rewrapped']} data key(s) re-wrapped, {out['already_current']} already current; "
          f"retired {', '.join(out['retired_kek_ids']) or 'nothing'}")
