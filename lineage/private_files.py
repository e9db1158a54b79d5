"""Files only their owner may read: key files and the CLI's credentials."""
from __future__ import annotations

import stat
from pathlib import Path

from lineage.exceptions import ConfigError


def require_private(path: Path, what: str) -> None:
    """Refuse (``ConfigError``, one line) a file that group or others may read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is open to other users (mode {mode:o}); run: chmod 600 {path}")
