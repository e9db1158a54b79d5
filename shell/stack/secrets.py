"""Credentials of a secured local stack (``lineage stack up --secure``).

Generated once, kept under ``<data_dir>/secrets/`` (directory 0700, files 0600), never printed:

- ``stack.json``: the Kafka SCRAM password and the Redis password of every role;
- ``<role>.env``: the ``LINEAGE_*`` variables a component of that role needs (bootstrap, the
  librdkafka SASL options as ``LINEAGE_KAFKA_CONFIG``, ``LINEAGE_REDIS_URL`` with user and
  password), to be sourced by the shell that starts it (``set -a; . secrets/worker.env``);
- ``redis.acl``: Redis's ACL file (passwords only as SHA-256 hashes; the default user is off).

The file's presence is what marks a data directory as secured: ``stack up``, ``status``,
``down`` and ``lineage demo`` read it and keep using SASL and Redis users.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lineage.exceptions import StackError
from lineage.settings import Settings

#: Who connects: the broker/admin principal (a Kafka super user), services that emit lineage,
#: the stream workers and the ClickHouse sink (which also serves the API and the HTTP intake).
ROLES = ("admin", "emitter", "worker", "sink")
#: Roles with a Redis user (emitters never touch Redis).
REDIS_ROLES = ("admin", "worker", "sink")
MECHANISM = "SCRAM-SHA-512"
PROTOCOL = "SASL_PLAINTEXT"
#: Keys the pipeline's Redis users may touch (every deployment's key space, see :mod:`lineage.keyspace`).
KEY_PATTERN = "lineage:*"
STATE_FILE = "stack.json"


def secrets_dir(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / "secrets"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise StackError(f"{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")


def _password() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class StackSecrets:
    """The passwords of one secured stack, by role."""

    directory: Path
    kafka: dict[str, str]
    redis: dict[str, str]
    mechanism: str = MECHANISM

    def __repr__(self) -> str:  # never show a password, even in a traceback
        return f"StackSecrets({self.directory})"

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE

    @classmethod
    def load(cls, data_dir: Path) -> StackSecrets | None:
        """The secrets of the stack under ``data_dir``, or None if it is not secured."""
        directory = secrets_dir(data_dir)
        path = directory / STATE_FILE
        if not path.is_file():
            return None
        _check_private(path)
        try:
            data = json.loads(path.read_text())
            return cls(directory, dict(data["kafka"]), dict(data["redis"]), str(data.get("mechanism", MECHANISM)))
        except (ValueError, KeyError, TypeError):
            raise StackError(f"{path} is not a valid secrets file; `lineage stack down --wipe` starts afresh") from None

    @classmethod
    def create(cls, data_dir: Path) -> StackSecrets:
        """Load the stack's secrets, generating (and storing, 0600) any that are missing."""
        found = cls.load(data_dir)
        kafka = dict(found.kafka) if found else {}
        redis = dict(found.redis) if found else {}
        for role in ROLES:
            kafka.setdefault(role, _password())
        for role in REDIS_ROLES:
            redis.setdefault(role, _password())
        made = cls(secrets_dir(data_dir), kafka, redis)
        if found is None or found.kafka != kafka or found.redis != redis:
            write_private(made.state_file, json.dumps(
                {"mechanism": made.mechanism, "kafka": kafka, "redis": redis}, indent=2) + "\n")
        return made

    # -- what each component needs --------------------------------------------------------
    def kafka_config(self, role: str) -> dict[str, str]:
        """librdkafka options (``LINEAGE_KAFKA_CONFIG``) of ``role``."""
        return {"security.protocol": PROTOCOL, "sasl.mechanisms": self.mechanism,
                "sasl.username": role, "sasl.password": self.kafka[role]}

    def redis_url(self, role: str, port: int, db: int = 0) -> str:
        """``redis://role:password@127.0.0.1:port/db`` (a secret: never print it)."""
        return f"redis://{quote(role, safe='')}:{quote(self.redis[role], safe='')}@127.0.0.1:{port}/{db}"

    def settings_for(self, settings: Settings, role: str) -> Settings:
        """``settings`` with the Kafka and (for roles that have one) Redis credentials of ``role``."""
        if role not in ROLES:
            raise StackError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        update: dict[str, Any] = {"kafka_config": {**settings.kafka_config, **self.kafka_config(role)}}
        if role in self.redis:
            update["redis_url"] = self.redis_url(role, settings.stack.redis_port, _db(settings.redis_url))
        return settings.model_copy(update=update)

    def redis_acl(self) -> str:
        """Redis ACL file text: the default user off, one user per role, passwords as SHA-256 hashes."""
        lines = ["user default off resetkeys resetchannels -@all"]
        for role in REDIS_ROLES:
            digest = hashlib.sha256(self.redis[role].encode()).hexdigest()
            if role == "admin":
                rules = "~* &* +@all"
            else:
                rules = f"~{KEY_PATTERN} resetchannels +@all -@dangerous"
            lines.append(f"user {role} on #{digest} {rules}")
        return "\n".join(lines) + "\n"

    def env_file_text(self, settings: Settings, role: str) -> str:
        """The ``LINEAGE_*`` lines a component of ``role`` needs to reach this stack."""
        mine = self.settings_for(settings, role)
        lines = [
            f"# `lineage` {role} of the secured stack in {Path(settings.data_dir).resolve()} (contains passwords)",
            f"LINEAGE_DATA_DIR={_quote_env(str(Path(settings.data_dir).resolve()))}",
            f"LINEAGE_KAFKA_BOOTSTRAP={_quote_env(settings.kafka_bootstrap)}",
            f"LINEAGE_KAFKA_CONFIG={_quote_env(json.dumps(mine.kafka_config, separators=(',', ':')))}",
        ]
        if role in self.redis:
            lines.append(f"LINEAGE_REDIS_URL={_quote_env(mine.redis_url)}")
        return "\n".join(lines) + "\n"

    def write_env_files(self, settings: Settings) -> dict[str, Path]:
        """``<role>.env`` per role (0600); returns role -> path."""
        out = {}
        for role in ROLES:
            path = self.directory / f"{role}.env"
            write_private(path, self.env_file_text(settings, role))
            out[role] = path
        return out

    def write_redis_acl(self) -> Path:
        path = self.directory / "redis.acl"
        write_private(path, self.redis_acl())
        return path


def _db(url: str) -> int:
    tail = url.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _quote_env(value: str) -> str:
    """Single-quoted for POSIX shells (values here hold no single quote; one would be escaped)."""
    return "'" + value.replace("'", "'\\''") + "'"


__all__ = ["MECHANISM", "REDIS_ROLES", "ROLES", "StackSecrets", "secrets_dir", "write_private"]
