"""Our own ``redis-server`` (AOF on, RDB snapshots off) under ``<data_dir>/redis``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from lineage.exceptions import StackError
from shell.stack.install import redis_server_path
from shell.stack.process import ManagedProcess

NAME = "redis"


def redis_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def ping(url: str, timeout: float = 1.0) -> bool:
    """True if a Redis server answers PING at `url`."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisServer:
    """A redis-server bound to 127.0.0.1:`port`, data in ``<data_dir>/redis``."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.dir = self.data_dir / "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def process(self) -> ManagedProcess:
        binary = redis_server_path() or "redis-server"
        argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--daemonize", "no", "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--protected-mode", "yes", "--logfile", "",
        ]
        return ManagedProcess.in_data_dir(self.data_dir, NAME, argv, cwd=self.dir, meta={"component": "redis"})

    def start(self, timeout: float = 20.0) -> None:
        """Start unless running, then wait for PING; idempotent."""
        if redis_server_path() is None:
            raise StackError("redis-server is not installed: run `lineage stack install`")
        self.dir.mkdir(parents=True, exist_ok=True)
        proc = self.process()
        if not proc.is_running() and ping(self.url, timeout=0.5):
            raise StackError(f"port {self.port} for redis is already in use by another redis server")
        proc.start()
        deadline = time.monotonic() + timeout
        while not ping(self.url, timeout=0.5):
            if not proc.is_running():
                raise StackError(f"redis-server exited during start-up; last lines of {proc.log_file}: {proc.tail()}")
            if time.monotonic() >= deadline:
                raise StackError(f"redis at {self.url} did not answer PING within {timeout:.0f}s; see {proc.log_file}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> bool:
        return self.process().stop(timeout)

    def status(self) -> dict[str, Any]:
        proc = self.process()
        pid = proc.pid()
        answering = ping(self.url)
        state = "up" if pid and answering else "unhealthy" if pid else "unmanaged" if answering else "stopped"
        return {"status": state, "url": self.url, "pid": pid, "log": str(proc.log_file)}
