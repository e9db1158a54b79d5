"""Who owns an embedded chDB directory: an advisory lock taken before the engine opens it.

chDB lets one process at a time open a directory, and says so only when a second one tries.
Every process that opens one through :meth:`Store.open` first takes an exclusive ``flock`` on
``<directory>.owner`` and writes there who it is (pid and, for a sink, the API it serves).
So a query that finds the lock taken knows whether to wait for a starting sink's API or for
another query to finish, and a starting sink waits for a query holding the store instead of
failing on the engine's own lock. The kernel drops the lock with its process, so a crashed
owner never leaves a stale one.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sinks.exceptions import StoreLockedError

_POLL_S = 0.05


def store_dir(dsn: str) -> Path:
    """The directory of a ``chdb://`` DSN."""
    return Path(dsn[len("chdb://"):].split("?", 1)[0]).expanduser().resolve()


def owner_file(dsn: str) -> Path:
    """``<directory>.owner``: the claim a process takes before it opens the store."""
    directory = store_dir(dsn)
    return directory.with_name(directory.name + ".owner")


def lock_held(path: Path) -> bool:
    """True if another process holds a flock on ``path`` (tested without blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Owner:
    """What the owner of a store wrote about itself."""

    pid: int
    role: str  # "sink" (owns it for good) or "query" (a command that will let go soon)
    api_url: str | None  # the query API a sink serves, if any


class _Held:
    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        self.count = 1


_held: dict[Path, _Held] = {}  # this process's ownerships, so it can open its own store again
_held_lock = threading.Lock()


class Ownership:
    """This process's claim on one store; ``release`` it when the store is closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._released = False

    @classmethod
    def acquire(cls, dsn: str, role: str = "query", api_url: str | None = None, wait_s: float = 0.0) -> Ownership:
        """Take the store, waiting up to ``wait_s`` for its current owner; StoreLockedError if it stays taken."""
        path = owner_file(dsn)
        deadline = time.monotonic() + wait_s
        while True:
            claim = cls.try_acquire(dsn, role, api_url)
            if claim is not None:
                return claim
            if time.monotonic() >= deadline:
                holder = read_owner(dsn)
                who = f"process {holder.pid}" if holder else "another process"
                raise StoreLockedError(f"the ClickHouse store {dsn} is in use by {who} (lock {path})")
            time.sleep(_POLL_S)

    @classmethod
    def try_acquire(cls, dsn: str, role: str = "query", api_url: str | None = None) -> Ownership | None:
        """Take the store if nobody else has it (this process may already have it)."""
        path = owner_file(dsn)
        with _held_lock:
            held = _held.get(path)
            if held is not None:
                held.count += 1
                return cls(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while owned
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                return None
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "role": role, "api_url": api_url}))
            fh.flush()
            _held[path] = _Held(fh)
            return cls(path)

    def release(self) -> None:
        with _held_lock:
            if self._released:
                return
            self._released = True
            held = _held.get(self.path)
            if held is None:
                return
            held.count -= 1
            if held.count == 0:
                del _held[self.path]
                held.fh.close()  # drops the flock


def read_owner(dsn: str) -> Owner | None:
    """Who wrote itself into the owner file last (meaningful while its lock is held)."""
    try:
        data = json.loads(owner_file(dsn).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    api_url = data.get("api_url")
    return Owner(data["pid"], str(data.get("role") or "query"), api_url if isinstance(api_url, str) else None)
