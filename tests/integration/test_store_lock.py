"""The embedded store's owner lock: exclusive across processes, re-entrant inside one, gone with its holder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sinks.clickhouse.ownership import owner_file
from sinks.clickhouse.ownership import Ownership, read_owner
from sinks.exceptions import StoreLockedError

pytestmark = [pytest.mark.integration]

_OTHER = """
import sys
from sinks.clickhouse.ownership import Ownership
claim = Ownership.try_acquire(sys.argv[1], "sink", "http://127.0.0.1:1")
print("taken" if claim else "busy", flush=True)
if claim and sys.argv[2] == "hold":
    sys.stdin.readline()
"""


def _other(dsn: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _OTHER, dsn, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_one_process_at_a_time_and_the_owner_says_who(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    assert owner_file(dsn) == tmp_path / "clickhouse.owner"
    first = Ownership.acquire(dsn)
    again = Ownership.try_acquire(dsn)  # this process may open its own store again
    assert again is not None
    other = _other(dsn, "try")
    assert other.communicate(timeout=30)[0].strip() == "busy"
    first.release()
    assert _other(dsn, "try").communicate(timeout=30)[0].strip() == "busy"  # still held by `again`
    again.release()
    holder = _other(dsn, "hold")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "taken"
        owner = read_owner(dsn)
        assert owner is not None and (owner.pid, owner.role, owner.api_url) == (holder.pid, "sink", "http://127.0.0.1:1")
        with pytest.raises(StoreLockedError, match=str(holder.pid)):
            Ownership.acquire(dsn, wait_s=0.2)
    finally:
        holder.communicate("\n", timeout=30)
    # the holder exited: the lock went with it, whatever its file still says
    claim = Ownership.acquire(dsn, wait_s=5)
    try:
        owner = read_owner(dsn)
        assert owner is not None and (owner.role, owner.api_url) == ("query", None)
    finally:
        claim.release()
