"""Apply the versioned SQL migrations in this package on start; record each in `schema_migrations`.

A migration is applied once; its checksum is stored and a changed file that was already
applied is an error (ship a new migration instead of editing an old one).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from collections.abc import Sequence
from typing import Any, Protocol

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.exceptions import MigrationError



class _Rows(Protocol):
    @property
    def rows(self) -> list[tuple[Any, ...]]: ...


class Store(Protocol):
    """What migrating needs of a store (:class:`sinks.clickhouse.client.Store` is one)."""

    def query(self, sql: str) -> _Rows: ...

    def command(self, sql: str) -> Any: ...

    def insert(self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None: ...


_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


def split_statements(sql: str) -> list[str]:
    """Split a script on `;` at line ends; comment-only chunks are dropped."""
    out = []
    for chunk in re.split(r";[ \t]*(?:\n|$)", sql):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            out.append(chunk.strip())
    return out


def load_migrations() -> list[Migration]:
    """All migrations shipped in this package, by version."""
    found = []
    for entry in resources.files(__package__).iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def apply_migrations(store: Store) -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    try:
        store.command(HISTORY_DDL)
        applied = {
            int(v): str(c) for v, c in store.query("SELECT version, checksum FROM schema_migrations FINAL").rows
        }
    except ClickHouseError as exc:
        raise MigrationError(f"cannot read migration history: {str(exc).splitlines()[0]}") from None
    done = []
    for mig in load_migrations():
        if mig.version in applied:
            if applied[mig.version] != mig.checksum:
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name} changed after it was applied; add a new migration instead"
                )
            continue
        for stmt in mig.statements:
            try:
                store.command(stmt)
            except ClickHouseError as exc:
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name} failed: {str(exc).splitlines()[0]}"
                ) from None
        store.insert(
            "schema_migrations", [[mig.version], [mig.name], [mig.checksum]], ["version", "name", "checksum"]
        )
        done.append(mig.version)
    return done
