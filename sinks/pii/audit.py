"""The PII audit log: one JSON line per decrypt, promotion or erasure (who, when, why, what).

Written before the result is released: if the audit record cannot be made durable, the
operation is refused (:class:`~sinks.pii.exceptions.AuditError`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from lineage.pii.exceptions import AuditError
from lineage.settings import Settings


class AuditLog:
    """Append-only JSON-lines file (``<data_dir>/pii/audit.jsonl``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(Path(settings.data_dir) / "pii" / "audit.jsonl")

    def record(self, action: str, who: str, why: str, **details: Any) -> dict[str, Any]:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "action": action,
            "who": who,
            "why": why,
            "pid": os.getpid(),
            **details,
        }
        line = orjson.dumps(entry) + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror}; refusing") from None
        return entry

    def entries(self) -> Iterator[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                for line in fh:
                    if line.strip():
                        yield orjson.loads(line)
        except FileNotFoundError:
            return
