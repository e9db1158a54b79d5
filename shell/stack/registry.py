"""Our own schema registry: Apicurio Registry (built by ``install_registry``) serving the
Confluent-compatible API at ``/apis/ccompat/v7``, storage in memory, bound to 127.0.0.1."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lineage.exceptions import SchemaError, StackError
from lineage.registry import RegistryError, SchemaRegistry
from shell.stack.install import registry_installed, registry_jar
from shell.stack.kafka import port_open
from shell.stack.process import ManagedProcess

NAME = "registry"
#: Where Apicurio serves the Confluent Schema Registry API; append it to host:port for clients.
CCOMPAT_PATH = "/apis/ccompat/v7"
HEAP = "256m"


def registry_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def probe(url: str, timeout: float = 1.0) -> str:
    """"up" if ``GET <url>/subjects`` answers with a subject list, "unhealthy" on another answer,
    "stopped" if nothing answers (basic auth in the URL is used, as the codec would)."""
    try:
        SchemaRegistry(url, timeout=timeout).subjects()
    except RegistryError as exc:
        return "stopped" if exc.status is None and "unreachable" in str(exc) else "unhealthy"
    except SchemaError:  # not an http(s) URL
        return "stopped"
    return "up"


class RegistryServer:
    """Apicurio Registry on 127.0.0.1:`port`; in-memory storage, so every start begins empty."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.dir = self.data_dir / "registry"

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL (what ``LINEAGE_SCHEMA_REGISTRY_URL`` takes)."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def process(self) -> ManagedProcess:
        argv = [
            shutil.which("java") or "java", f"-Xmx{HEAP}",
            f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
            "-jar", str(registry_jar()),
        ]
        return ManagedProcess.in_data_dir(self.data_dir, NAME, argv, cwd=self.dir, meta={"component": "registry"})

    def start(self, timeout: float = 120.0) -> None:
        """Start unless running, then wait until the API answers; idempotent."""
        if not registry_installed():
            raise StackError("the schema registry is not built: run `lineage stack install --registry`")
        self.dir.mkdir(parents=True, exist_ok=True)
        proc = self.process()
        if not proc.is_running() and port_open(f"127.0.0.1:{self.port}"):
            raise StackError(f"port {self.port} for the schema registry is already in use by another process")
        proc.start()
        deadline = time.monotonic() + timeout
        while probe(self.url, timeout=1.0) != "up":
            if not proc.is_running():
                raise StackError(f"the schema registry exited during start-up; "
                                 f"last lines of {proc.log_file}: {proc.tail()}")
            if time.monotonic() >= deadline:
                raise StackError(f"schema registry at {self.url} did not answer within {timeout:.0f}s; "
                                 f"see {proc.log_file}")
            time.sleep(0.25)

    def stop(self, timeout: float = 20.0) -> bool:
        return self.process().stop(timeout)

    def is_running(self) -> bool:
        return self.process().is_running()

    def status(self) -> dict[str, Any]:
        proc = self.process()
        pid = proc.pid()
        answering = probe(self.url) == "up"
        state = "up" if pid and answering else "unhealthy" if pid else "unmanaged" if answering else "stopped"
        return {"status": state, "url": self.url, "pid": pid, "log": str(proc.log_file)}
