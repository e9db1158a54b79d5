"""ClickHouse client by URL scheme, and :class:`Store`: one serialized handle shared by threads.

``chdb:///abs/dir`` opens the embedded engine (one process per directory); ``http(s)://``
talks to a server. Both go through clickhouse-connect, so the SQL is the same.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.exceptions import QueryError, SinkBackpressureError, StoreLockedError

_LOCKED_MARKERS = ("Cannot lock file", "already initialized with path", "Resource temporarily unavailable")


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def open_client(dsn: str, database: str) -> Client:
    """Connect, create `database` if needed and make it the session default."""
    try:
        client = clickhouse_connect.get_client(dsn=dsn)
    except ClickHouseError as exc:
        text = str(exc)
        if any(m in text for m in _LOCKED_MARKERS):
            raise StoreLockedError(
                f"the ClickHouse store {dsn} is in use by another process (is `lineage sink` running?)"
            ) from None
        if is_embedded(dsn):
            raise QueryError(f"cannot open {dsn}: {text.splitlines()[0]}") from None
        raise SinkBackpressureError(f"ClickHouse at {dsn} unavailable: {text.splitlines()[0]}") from None
    except OSError as exc:
        raise SinkBackpressureError(f"ClickHouse at {dsn} unavailable: {exc}") from None
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.database = database
    return client


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


class Store:
    """A ClickHouse client whose calls are serialized with a lock (chDB handles are not re-entrant)."""

    def __init__(self, client: Client, dsn: str, database: str) -> None:
        self.client = client
        self.dsn = dsn
        self.database = database
        self.lock = threading.RLock()

    @classmethod
    def open(cls, dsn: str, database: str, migrate: bool = True) -> Store:
        from sinks.clickhouse.migrations import apply_migrations

        store = cls(open_client(dsn, database), dsn, database)
        if migrate:
            try:
                apply_migrations(store)
            except BaseException:
                store.close()
                raise
        return store

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
        if arrow_table.num_rows == 0:
            return
        settings = {"insert_deduplication_token": token} if token else {}
        with self.lock:
            self.client.insert_arrow(table, arrow_table, settings=settings)

    def close(self) -> None:
        with self.lock:
            self.client.close()
