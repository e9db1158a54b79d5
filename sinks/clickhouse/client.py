"""ClickHouse client by URL scheme, and :class:`Store`: one serialized handle shared by threads.

``chdb:///abs/dir`` opens the embedded engine (one process per directory); ``http(s)://``
talks to a server. Both go through clickhouse-connect, so the SQL is the same.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from lineage.redact import redact_text, redact_url
from sinks.clickhouse.ownership import Ownership, lock_held, store_dir
from sinks.exceptions import QueryError, SinkBackpressureError, StoreLockedError

_LOCKED_MARKERS = ("Cannot lock file", "already initialized with path", "Resource temporarily unavailable")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sql_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def settings_sql(settings: Mapping[str, Any]) -> str:
    """`` SETTINGS k = v, ...`` for the end of a statement ('' when empty).

    Inline settings cost nothing; passing them per call makes the embedded client read and
    restore the session settings around every statement.
    """
    parts = []
    for name, value in settings.items():
        if not _SETTING_NAME.match(name):
            raise ValueError(f"not a setting name: {name!r}")
        literal = str(int(value)) if isinstance(value, (bool, int)) else sql_string(str(value))
        parts.append(f"{name} = {literal}")
    return f" SETTINGS {', '.join(parts)}" if parts else ""


def store_id(dsn: str, database: str) -> str:
    """A stable, non-reversible id of a store, so a client can tell it reached the right sink
    without the sink publishing its DSN."""
    return hashlib.sha256(f"{dsn}\n{database}".encode()).hexdigest()[:16]


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def _engine_locked(dsn: str) -> bool:
    """True if another process has the embedded engine's directory open (its status-file flock)."""
    return lock_held(store_dir(dsn) / "status")  # the same probe `lineage stack status` uses


def open_client(dsn: str, database: str) -> Client:
    """Connect, create `database` if needed and make it the session default."""
    try:
        client = clickhouse_connect.get_client(dsn=dsn)
    except ClickHouseError as exc:
        text = str(exc)
        if any(m in text for m in _LOCKED_MARKERS) or (is_embedded(dsn) and _engine_locked(dsn)):
            raise StoreLockedError(
                f"the ClickHouse store {dsn} is in use by another process (is `lineage sink` running?)"
            ) from None
        if is_embedded(dsn):
            raise QueryError(f"cannot open {dsn}: {text.splitlines()[0]}") from None
        raise SinkBackpressureError(f"ClickHouse at {redact_url(dsn)} unavailable: {redact_text(text.splitlines()[0])}") from None
    except OSError as exc:
        raise SinkBackpressureError(f"ClickHouse at {redact_url(dsn)} unavailable: {redact_text(str(exc))}") from None
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.database = database
    if is_embedded(dsn):
        # The shipped queries read their walk twice (`WITH ... AS MATERIALIZED`); computed once
        # it is twice as fast. A session default, so read-only queries need not change it.
        client.command("SET enable_materialized_cte = 1")
    return client


@dataclass(slots=True)
class StagedInsert:
    """An insert prepared by :meth:`Store.stage_arrow`; ``discard`` it once done (or abandoned)."""

    table: str
    rows: int
    columns: list[str]
    arrow_table: Any = None  # server: the data itself
    path: str | None = None  # embedded: the Arrow stream file holding the data

    def discard(self) -> None:
        self.arrow_table = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as ``{column: value}``."""
        return [dict(zip(self.columns, row)) for row in self.rows]


def error_line(exc: Exception) -> str:
    """The first line of an engine error (at most 500 characters): what a 400 or a CLI error shows."""
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


class Store:
    """A ClickHouse client whose calls are serialized with a lock (chDB handles are not re-entrant)."""

    def __init__(self, client: Client, dsn: str, database: str, ownership: Ownership | None = None) -> None:
        self.client = client
        self.dsn = dsn
        self.database = database
        self.lock = threading.RLock()
        self._siblings: list[Store] = []
        self._ownership = ownership

    @classmethod
    def open(
        cls,
        dsn: str,
        database: str,
        migrate: bool = True,
        *,
        role: str = "query",
        api_url: str | None = None,
        wait_s: float = 0.0,
        ownership: Ownership | None = None,
    ) -> Store:
        """Connect (and migrate). An embedded store is first claimed (see ``ownership``) as
        ``role``, waiting up to ``wait_s`` for its owner; pass ``ownership`` if already claimed."""
        from sinks.clickhouse.migrations import apply_migrations

        deadline = time.monotonic() + wait_s
        if is_embedded(dsn) and ownership is None:
            ownership = Ownership.acquire(dsn, role, api_url, wait_s)
        try:
            while True:
                try:
                    client = open_client(dsn, database)
                    break
                except StoreLockedError:
                    # a process that opens the engine without claiming it first (an older
                    # version, a health probe) holds it: wait for it like for an owner
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.1)
            store = cls(client, dsn, database, ownership)
        except BaseException:
            if ownership is not None:
                ownership.release()
            raise
        if migrate:
            try:
                apply_migrations(store)
            except BaseException:
                store.close()
                raise
        return store

    def sibling(self) -> Store:
        """A second connection to the same store (for the embedded engine: a second handle on the
        same engine), so two threads can run statements at the same time. Closed with this one."""
        other = Store(open_client(self.dsn, self.database), self.dsn, self.database)
        with self.lock:
            self._siblings.append(other)
        return other

    @property
    def embedded(self) -> bool:
        return is_embedded(self.dsn)

    def query(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        with self.lock:
            res = self.client.query(sql, parameters=dict(params or {}), settings=dict(settings or {}))
            return QueryResult(
                list(res.column_names), [t.name for t in res.column_types], [tuple(r) for r in res.result_rows]
            )

    def command(self, sql: str, params: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None) -> Any:
        with self.lock:
            return self.client.command(sql, parameters=dict(params or {}) or None, settings=dict(settings or {}))

    def insert(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        token: str | None = None,
    ) -> None:
        """Column-oriented insert; `token` becomes the insert deduplication token."""
        if not columns or not len(columns[0]):
            return
        settings = {"insert_deduplication_token": token} if token else {}
        with self.lock:
            self.client.insert(
                table, columns, column_names=list(column_names), column_oriented=True, settings=settings
            )

    def insert_arrow(self, table: str, arrow_table: Any, token: str | None = None) -> None:
        """Insert a pyarrow Table; `token` becomes the insert deduplication token."""
        staged = self.stage_arrow(table, arrow_table)
        try:
            self.insert_staged(staged, token)
        finally:
            staged.discard()

    def stage_arrow(self, table: str, arrow_table: Any) -> StagedInsert:
        """Prepare an insert without touching the engine (no lock taken).

        Embedded: the table is streamed into a temporary Arrow file now, which the engine
        reads with ``INSERT ... FROM INFILE`` (it reads inserts from a file anyway), so the
        Arrow memory can be reused at once and the insert itself does no Python work.
        """
        if not self.embedded or arrow_table.num_rows == 0:
            return StagedInsert(table, arrow_table.num_rows, arrow_table.column_names, arrow_table)
        import pyarrow as pa

        fd, path = tempfile.mkstemp(prefix="lineage-insert-", suffix=".arrows")
        os.close(fd)
        try:
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, arrow_table.schema) as writer:
                writer.write_table(arrow_table)
        except BaseException:
            os.unlink(path)
            raise
        return StagedInsert(table, arrow_table.num_rows, arrow_table.column_names, path=path)

    def insert_staged(self, staged: StagedInsert, token: str | None = None) -> None:
        """Run a staged insert; `token` becomes the insert deduplication token."""
        if staged.rows == 0:
            return
        settings = {"insert_deduplication_token": token} if token else {}
        if staged.path is None:
            with self.lock:
                self.client.insert_arrow(staged.table, staged.arrow_table, settings=settings)
            return
        columns = ", ".join(f"`{c}`" for c in staged.columns)
        self.command(
            f"INSERT INTO `{staged.table}` ({columns}) FROM INFILE {sql_string(staged.path)}"
            f"{settings_sql(settings)} FORMAT ArrowStream"
        )

    def close(self) -> None:
        with self.lock:
            for other in self._siblings:
                other.close()
            self._siblings.clear()
            self.client.close()
            if self._ownership is not None:
                self._ownership.release()
                self._ownership = None
