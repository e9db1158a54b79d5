"""Files only their owner may read: key files and the CLI's credentials; checked, created and replaced atomically."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from lineage.exceptions import ConfigError


def require_private(path: Path, what: str) -> None:
    """Refuse (``ConfigError``, one line) a file that group or others may read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is open to other users (mode {mode:o}); run: chmod 600 {path}")


def _written_tmp(path: Path, content: bytes) -> Path:
    """A new 0600 file beside ``path`` holding ``content``, fsynced (the caller links or renames it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def create_private_file(path: Path, content: bytes) -> bool:
    """Create ``path`` (0600) with ``content`` unless it exists; atomic (nobody reads it half-written).

    Returns False if another process created it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = _written_tmp(path, content)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def replace_private_file(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``content`` (fsynced, with its directory)."""
    tmp = _written_tmp(path, content)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
