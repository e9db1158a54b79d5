"""A second, secured local stack for the tests that need one (no tests here).

`lineage stack up --secure` semantics on free ports under a temporary data directory: Kafka with
SASL/SCRAM-SHA-512 and ACLs, Redis with ACL users (the default user off). Always the project's
own stack: a plaintext cluster given by ``LINEAGE_TEST_BOOTSTRAP`` cannot stand in for it.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import free_port, make_topics
from lineage.pii.sealing import KeyRing
from lineage.settings import Settings, StackSettings, TopicSettings
from shell.stack import Stack
from shell.stack.acl import grant_deployment
from shell.stack.secrets import StackSecrets


@dataclass(frozen=True)
class SecureStack:
    """Where the secured stack listens, and settings for each role on it."""

    data_dir: Path
    stack_settings: StackSettings
    secrets: StackSecrets

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.stack_settings.kafka_port}"

    @property
    def redis_address(self) -> str:
        """The Redis URL without credentials (what a client that has none would use)."""
        return f"redis://127.0.0.1:{self.stack_settings.redis_port}/0"

    def settings(self, role: str | None = "admin", **overrides: Any) -> Settings:
        """Settings on this stack as ``role`` (None: no credentials at all)."""
        base: dict[str, Any] = {"data_dir": self.data_dir, "kafka_bootstrap": self.bootstrap,
                                "redis_url": self.redis_address, "stack": self.stack_settings}
        plain = Settings(**{**base, **overrides})
        return plain if role is None else self.secrets.settings_for(plain, role)

    def deployment(self, data_dir: Path, **overrides: Any) -> dict[str, Settings]:
        """A private deployment (topic prefix, app id, data dir): ACLs granted, topics made; role -> settings."""
        tag = uuid.uuid4().hex[:8]
        fields: dict[str, Any] = {"data_dir": data_dir, "app_id": f"test-{tag}",
                                  "topics": TopicSettings(prefix=f"t{tag}", openlineage=f"t{tag}.openlineage.events"),
                                  **overrides}
        roles = {role: self.settings(role, **fields) for role in ("admin", "emitter", "worker", "sink")}
        grant_deployment(roles["admin"], roles["admin"])
        make_topics(roles["admin"])
        KeyRing.under(roles["admin"].keys_dir).ensure()  # as `stack up` does for its own data dir
        return roles


def secure_stack(data_dir: Path) -> Iterator[SecureStack]:
    """Start a secured stack under ``data_dir`` on free ports; stop (and wipe) it afterwards."""
    stack_settings = StackSettings(kafka_port=free_port(), kafka_controller_port=free_port(),
                                   redis_port=free_port(), kafka_heap="512m")
    base = Settings(data_dir=data_dir, kafka_bootstrap=f"127.0.0.1:{stack_settings.kafka_port}",
                    redis_url=f"redis://127.0.0.1:{stack_settings.redis_port}/0", stack=stack_settings)
    stack = Stack(base, brokers=1, secure=True)
    try:
        stack.up()
        assert stack.secrets is not None
        yield SecureStack(Path(data_dir), stack_settings, stack.secrets)
    finally:
        stack.down(wipe=True)
