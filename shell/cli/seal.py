"""`lineage seal public-key|rotate`: the key emitters seal subject ids and feature snapshots for."""
from __future__ import annotations

import json

import typer

from lineage.pii.sealing import KeyRing
from lineage.settings import load_settings

app = typer.Typer(help="The pipeline's seal key: emitters seal PII for it before it leaves their process.",
                  no_args_is_help=True)


def _ring() -> KeyRing:
    return KeyRing.under(load_settings().keys_dir)


@app.command("public-key")
def public_key(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the current public key (set it as LINEAGE_SEAL_PUBLIC_KEY / EmitterConfig.seal_public_key); makes the first seal key if there is none."""
    ring = _ring()
    key = ring.ensure()
    if as_json:
        print(json.dumps({"public_key": key, "key_ids": ring.unsealer().key_ids, "file": str(ring.public_path)}))
    else:
        print(key)


@app.command("rotate")
def rotate(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Make a new current seal key. Older keys stay, so events already sealed for them still open;
    workers pick the new key up on the first event sealed for it."""
    ring = _ring()
    ring.ensure()
    key = ring.create()
    if as_json:
        print(json.dumps({"public_key": key, "key_ids": ring.unsealer().key_ids}))
    else:
        print(f"new seal public key (configure emitters with it): {key}")
