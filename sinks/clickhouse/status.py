"""ClickHouse health without taking the embedded store away from its owner.

An on-disk chDB directory can be opened by ONE process at a time, so the check never opens
it in this process. A held lock (the ``<directory>.owner`` claim every opener takes first, or
the engine's own status-file lock) means some process, normally the sink, owns the store,
which is healthy. Otherwise a short subprocess claims the store like any query does, opens it
and runs ``SELECT version()``, so a sink starting meanwhile waits for the probe instead of
racing it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lineage.redact import redact_text, redact_url

from sinks.clickhouse.ownership import lock_held, owner_file, store_dir

_PROBE = """
import json, sys
import clickhouse_connect
from sinks.clickhouse.ownership import Ownership
claim = Ownership.try_acquire(sys.argv[1], "query")
if claim is None:
    print(json.dumps({"owned": True}))
    sys.exit(0)
client = clickhouse_connect.get_client(dsn=sys.argv[1])
print(json.dumps({"version": client.query("SELECT version()").result_rows[0][0]}))
client.close()
claim.release()
"""

LOCKED = "Cannot lock file"


def lock_owner(path: Path) -> int | None:
    """Best effort: the pid with ``path`` open (needs permission to read /proc/<pid>/fd)."""
    target = str(path.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == target:
                    return int(proc.name)
        except OSError:
            continue
    return None


def embedded_status(dsn: str, timeout: float = 60.0) -> dict[str, Any]:
    path = store_dir(dsn)
    report: dict[str, Any] = {"dsn": dsn, "embedded": True}
    if not (path / "status").exists() and not path.exists():
        return {**report, "status": "absent", "detail": "created by the first process that opens it"}
    for lock in (owner_file(dsn), path / "status"):
        if lock_held(lock):
            return {**report, "status": "owned", "owner_pid": lock_owner(lock)}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, dsn], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**report, "status": "error", "detail": f"probe did not finish within {timeout:.0f}s"}
    if done.returncode == 0:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result.get("owned"):  # claimed by another process between the check and the probe
            return {**report, "status": "owned", "owner_pid": lock_owner(owner_file(dsn))}
        return {**report, "status": "up", **result}
    if LOCKED in done.stdout + done.stderr:
        return {**report, "status": "owned", "owner_pid": lock_owner(path / "status")}
    lines = (done.stderr or done.stdout).strip().splitlines()
    return {**report, "status": "error", "detail": lines[-1] if lines else f"exit {done.returncode}"}


def redact(url: str) -> str:
    """`url` with any password replaced by ``***`` (status output is shown and logged)."""
    return redact_url(url)


def server_status(url: str, timeout: float = 2.0) -> dict[str, Any]:
    import clickhouse_connect  # imported lazily: only the server path needs it in-process

    report: dict[str, Any] = {"dsn": redact(url), "embedded": False}
    try:
        client = clickhouse_connect.get_client(dsn=url, connect_timeout=timeout, send_receive_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the status we report
        detail = redact_text(str(exc), [urlsplit(url).password or ""]).splitlines()[0][:200]
        return {**report, "status": "stopped", "detail": detail}
    try:
        ok = client.ping()
        return {**report, "status": "up" if ok else "unhealthy", "version": client.server_version}
    finally:
        client.close()


def clickhouse_status(dsn: str) -> dict[str, Any]:
    """``{"status": "up"|"owned"|"absent"|"stopped"|"unhealthy"|"error", "dsn": ..., ...}``."""
    if dsn.startswith("chdb://"):
        return embedded_status(dsn)
    return server_status(dsn)
