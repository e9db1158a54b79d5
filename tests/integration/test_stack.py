"""The real stack: broker identity and protocol, produce/consume, Redis, chDB, the CLI.

A 3-node cluster losing a broker is a fault test: tests/fault/test_broker_faults.py."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from integration.kafka_support import consume_values, create_topic, produce_values
from lineage.exceptions import StackError
from shell.stack import ManagedProcess, clickhouse_status, describe, managed_processes

REPO = Path(__file__).resolve().parents[2]


# -- helpers -------------------------------------------------------------------------------
def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def api_versions_v0(address: str) -> dict[int, tuple[int, int]]:
    """Send a hand-made ApiVersions v0 request; returns {api_key: (min, max)}."""
    host, _, port = address.rpartition(":")
    client_id = b"lineage-test"
    correlation = 0x5EED
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    got_correlation, error_code, count = struct.unpack_from(">ihi", payload, 0)
    assert got_correlation == correlation
    assert error_code == 0
    versions = {}
    for i in range(count):
        key, lo, hi = struct.unpack_from(">hhh", payload, 10 + 6 * i)
        versions[key] = (lo, hi)
    assert 10 + 6 * count == len(payload)
    return versions


# -- the session stack ---------------------------------------------------------------------
@pytest.mark.integration
def test_broker_reports_the_cluster_id_the_stack_formatted(stack) -> None:
    info = describe(stack.bootstrap)
    assert info.broker_ids
    if stack.cluster_id is None:
        pytest.skip(f"{stack.source} stack: cluster id not formatted by shell.stack")
    assert info.cluster_id == stack.cluster_id
    assert (stack.data_dir / "kafka" / "cluster.json").is_file()


@pytest.mark.integration
def test_broker_speaks_the_kafka_protocol(stack) -> None:
    versions = api_versions_v0(stack.bootstrap.split(",")[0])
    for key, name in ((0, "Produce"), (1, "Fetch"), (3, "Metadata"), (18, "ApiVersions")):
        assert key in versions, f"{name} missing"
        lo, hi = versions[key]
        assert 0 <= lo <= hi, (name, lo, hi)
    assert versions[0][1] >= 9 and versions[1][1] >= 12 and versions[3][1] >= 9
    assert versions[18][0] == 0  # v0 is what we just spoke


@pytest.mark.integration
def test_produce_and_consume_through_a_unique_topic(stack) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}.stack"
    create_topic(stack.bootstrap, topic, partitions=2)
    values = [f"m{i}".encode() for i in range(20)]
    produce_values(stack.bootstrap, topic, values)
    assert sorted(consume_values(stack.bootstrap, topic, len(values))) == sorted(values)


@pytest.mark.integration
def test_redis_ping_set_get(stack) -> None:
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
    key = f"t{uuid.uuid4().hex[:8]}:k"
    assert client.ping()
    assert client.set(key, b"v", ex=60)
    assert client.get(key) == b"v"
    client.delete(key)
    if stack.source == "local":
        info = client.info("persistence")
        assert info["aof_enabled"] == 1


# -- chDB --------------------------------------------------------------------------------------
_HOLD = """
import sys, time, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
client.query("SELECT 1")
print("ready", flush=True)
sys.stdin.read()
"""


_CLAIM = """
import sys
from sinks.clickhouse.ownership import Ownership
claim = Ownership.try_acquire(sys.argv[1], "sink")
print("claimed" if claim else "busy", flush=True)
sys.stdin.read()
"""


@pytest.mark.integration
def test_chdb_fresh_dir_and_single_owner(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    assert clickhouse_status(dsn)["status"] == "absent"
    probe = "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn=sys.argv[1]); " \
            "print(c.query('SELECT sum(number) FROM numbers(10)').result_rows[0][0])"
    done = subprocess.run([sys.executable, "-c", probe, dsn], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "45"
    up = clickhouse_status(dsn)
    assert up["status"] == "up" and up["version"].split(".")[0].isdigit()

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, dsn], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        owned = clickhouse_status(dsn)
        assert owned["status"] == "owned"
        assert owned["owner_pid"] == holder.pid
    finally:
        holder.communicate(timeout=60)
    assert clickhouse_status(dsn)["status"] == "up"

    # a process that claimed the store (as a starting sink does) but has not opened it yet
    claimant = subprocess.Popen([sys.executable, "-c", _CLAIM, dsn], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert claimant.stdout is not None and claimant.stdout.readline().strip() == "claimed"
        owned = clickhouse_status(dsn)
        assert owned["status"] == "owned" and owned["owner_pid"] == claimant.pid
    finally:
        claimant.communicate(timeout=60)
    assert clickhouse_status(dsn)["status"] == "up"  # the probe let go of its own claim: it can run again


# -- ManagedProcess --------------------------------------------------------------------------
@pytest.mark.integration
def test_managed_process_lifecycle(tmp_path: Path) -> None:
    proc = ManagedProcess.in_data_dir(tmp_path, "sleeper", ["sleep", "300"])
    assert not proc.is_running() and proc.stop() is False
    pid = proc.start()
    assert proc.is_running() and proc.pid() == pid
    assert proc.start() == pid  # idempotent
    found = managed_processes(tmp_path)
    assert [(p.name, p.pid()) for p in found] == [("sleeper", pid)]
    assert found[0].stop(timeout=5) is True
    assert not proc.is_running() and not proc.pid_file.exists()
    assert proc.log_file.read_text().count("start sleeper") == 1

    stubborn = ManagedProcess.in_data_dir(tmp_path, "stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & wait"])
    stubborn.start()
    assert stubborn.stop(timeout=1) is True  # SIGKILL after the timeout
    assert not stubborn.is_running()

    with pytest.raises(StackError, match="cannot start"):
        ManagedProcess.in_data_dir(tmp_path, "nope", ["/nonexistent/binary"]).start()


# -- the CLI ---------------------------------------------------------------------------------
def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shell", "stack", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


@pytest.mark.integration
@pytest.mark.slow
def test_cli_up_status_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
    env.update({
        "LINEAGE_DATA_DIR": str(data_dir),
        "LINEAGE_STACK__KAFKA_PORT": "29292", "LINEAGE_STACK__KAFKA_CONTROLLER_PORT": "29293",
        "LINEAGE_STACK__REDIS_PORT": "26368", "LINEAGE_STACK__KAFKA_HEAP": "384m",
        "LINEAGE_KAFKA_BOOTSTRAP": "127.0.0.1:29292", "LINEAGE_REDIS_URL": "redis://127.0.0.1:26368/0",
        "LINEAGE_API_PORT": "29298",
    })
    try:
        up = _cli(env, "up", "--json")
        assert up.returncode == 0, up.stderr
        first = json.loads(up.stdout)
        assert first["kafka"]["status"] == "up" and first["redis"]["status"] == "up"

        again = _cli(env, "up", "--json")  # idempotent: same processes
        assert again.returncode == 0, again.stderr
        second = json.loads(again.stdout)
        assert [b["pid"] for b in second["kafka"]["brokers"]] == [b["pid"] for b in first["kafka"]["brokers"]]
        assert second["redis"]["pid"] == first["redis"]["pid"]

        # a pipeline process registered the way the worker/sink will be: `down` must stop it
        worker = ManagedProcess.in_data_dir(data_dir, "worker", ["sleep", "300"])
        worker.start()

        status = _cli(env, "status", "--json", "--check")
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["kafka"]["status"] == "up"
        assert report["kafka"]["bootstrap"] == "127.0.0.1:29292"
        assert report["kafka"]["cluster_id"] == json.loads((data_dir / "kafka" / "cluster.json").read_text())["cluster_id"]
        assert report["redis"] == {**report["redis"], "status": "up", "url": "redis://127.0.0.1:26368/0"}
        assert report["clickhouse"]["status"] in {"up", "owned", "absent"}
        assert report["clickhouse"]["dsn"] == f"chdb://{(data_dir / 'clickhouse').resolve()}"
        assert report["api"] == {"status": "stopped", "url": "http://127.0.0.1:29298"}
        assert report["dashboard"] == {"status": "stopped", "url": "http://127.0.0.1:29298/dashboard"}
        assert [p["name"] for p in report["processes"]] == ["worker"]

        table = _cli(env, "status")
        assert table.returncode == 0 and "kafka" in table.stdout and "up" in table.stdout
    finally:
        down = _cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert set(down.stdout.removeprefix("stopped: ").strip().split(", ")) == {"worker", "redis", "kafka-1"}
    assert not worker.is_running()

    after = _cli(env, "status", "--json")
    assert after.returncode == 0
    report = json.loads(after.stdout)
    for component in ("kafka", "redis", "api", "dashboard"):
        assert report[component]["status"] == "stopped", component
    assert _cli(env, "status", "--check").returncode == 1
    again = _cli(env, "down")
    assert again.returncode == 0 and "nothing was running" in again.stdout
