"""The CLI's API key: ``LINEAGE_API_KEY``, else a credentials file only its owner can read.

The file (``<data_dir>/credentials`` unless ``LINEAGE_API_KEY_FILE`` names another) holds one
token. It is written with mode 0600 and refused if anyone but its owner can read or write it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lineage.private_files import require_private

if TYPE_CHECKING:
    from pathlib import Path

    from lineage.settings import Settings


def read_api_key(settings: Settings) -> str | None:
    """The key the CLI presents to the sink API, or None if none is configured."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value().strip() or None
    path = settings.credentials_path
    try:
        require_private(path, "credentials file")
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_api_key(path: Path, token: str) -> None:
    """Store ``token`` in ``path`` with mode 0600 (replacing what was there, atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
