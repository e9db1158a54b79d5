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
from shell.stack.secrets import StackSecrets

NAME = "redis"


def redis_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def answers(port: int, timeout: float = 0.5) -> bool:
    """True if some Redis server answers on 127.0.0.1:`port`, with or without letting us in."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
        return True
    except (redis.AuthenticationError, redis.ResponseError):
        return True  # a server that wants a password (NOAUTH) is still a server
    except redis.RedisError:
        return False
    finally:
        client.close()


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
    """A redis-server bound to 127.0.0.1:`port`, data in ``<data_dir>/redis``.

    With ``secrets`` it starts from their ACL file (the default user off, one user per role) and
    talks to itself as the admin user; :attr:`url` then holds a password and is never shown
    (:attr:`address` is what reports print).
    """

    def __init__(self, data_dir: Path, port: int, secrets: StackSecrets | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.dir = self.data_dir / "redis"
        self.secrets = secrets

    @property
    def address(self) -> str:
        """The server's URL without credentials (safe to print)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def url(self) -> str:
        """What the stack itself connects with (the admin user's URL when secured: a secret)."""
        if self.secrets is not None:
            return self.secrets.redis_url("admin", self.port)
        return self.address

    def process(self) -> ManagedProcess:
        binary = redis_server_path() or "redis-server"
        argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--daemonize", "no", "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--protected-mode", "yes", "--logfile", "",
        ]
        if self.secrets is not None:
            argv += ["--aclfile", str(self.secrets.directory / "redis.acl")]
        return ManagedProcess.in_data_dir(self.data_dir, NAME, argv, cwd=self.dir, meta={"component": "redis"})

    def start(self, timeout: float = 20.0) -> None:
        """Start unless running, then wait for PING; idempotent."""
        if redis_server_path() is None:
            raise StackError("redis-server is not installed: run `lineage stack install`")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.secrets is not None:
            self.secrets.write_redis_acl()
        proc = self.process()
        if not proc.is_running() and answers(self.port):
            raise StackError(f"port {self.port} for redis is already in use by another redis server")
        proc.start()
        deadline = time.monotonic() + timeout
        while not ping(self.url, timeout=0.5):
            if not proc.is_running():
                raise StackError(f"redis-server exited during start-up; last lines of {proc.log_file}: {proc.tail()}")
            if time.monotonic() >= deadline:
                raise StackError(
                    f"redis at {self.address} did not answer PING within {timeout:.0f}s; see {proc.log_file}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> bool:
        return self.process().stop(timeout)

    def status(self) -> dict[str, Any]:
        proc = self.process()
        pid = proc.pid()
        answering = ping(self.url)
        if not answering and pid is None:
            answering = answers(self.port)
        state = "up" if pid and answering else "unhealthy" if pid else "unmanaged" if answering else "stopped"
        return {"status": state, "url": self.address, "pid": pid, "log": str(proc.log_file),
                "secure": self.secrets is not None}
