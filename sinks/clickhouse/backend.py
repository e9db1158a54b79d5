"""Where `lineage query/sql/verify` run: the running sink's API, or the store opened directly.

Embedded chDB can be opened by one process only: when a sink owns the directory it answers on
``settings.api_url`` and everything goes through it; when nobody owns it the CLI opens it (and
owns it meanwhile, see ``ownership``). A ClickHouse server is always queried directly.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Protocol

from sinks.clickhouse.client import QueryResult, Store, error_line
from sinks.clickhouse.ownership import Ownership, read_owner
from sinks.clickhouse.queries import READONLY_SETTINGS, get_query
from sinks.clickhouse.sandbox import DEFAULT_ROLE, SqlSandbox
from sinks.exceptions import QueryError, StoreLockedError

if TYPE_CHECKING:
    from lineage.settings import Settings, SqlSettings


class QueryBackend(Protocol):
    where: str

    def named(self, name: str, params: dict[str, Any]) -> QueryResult: ...

    def sql(self, text: str) -> QueryResult: ...

    def close(self) -> None: ...


class DirectBackend:
    """The store opened here; SQL goes through the sandbox as ``role``."""

    def __init__(self, store: Store, limits: SqlSettings, role: str = DEFAULT_ROLE) -> None:
        self.store = store
        self.where = store.dsn
        self.sandbox = SqlSandbox(store, limits)
        self.role = role

    def named(self, name: str, params: dict[str, Any]) -> QueryResult:
        spec = get_query(name)
        return _run(self.store, spec.sql, spec.bind(params))

    def sql(self, text: str) -> QueryResult:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            return self.sandbox.run(text, self.role)
        except ClickHouseError as exc:
            raise QueryError(error_line(exc)) from None

    def close(self) -> None:
        self.store.close()


def _run(store: Store, sql: str, params: dict[str, Any]) -> QueryResult:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        return store.query(sql, params, READONLY_SETTINGS)
    except ClickHouseError as exc:
        raise QueryError(error_line(exc)) from None


class RemoteBackend:
    def __init__(self, api_url: str, timeout: float = 120.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.where = f"{self.api_url} (lineage sink)"
        self.timeout = timeout

    def _call(self, req: urllib.request.Request) -> QueryResult:
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", str(exc))
            except ValueError:
                message = str(exc)
            raise QueryError(message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise QueryError(f"the sink API at {self.api_url} did not answer: {exc}") from None
        return QueryResult(body["columns"], body["types"], [tuple(r) for r in body["rows"]])

    def named(self, name: str, params: dict[str, Any]) -> QueryResult:
        get_query(name).bind(params)  # fail fast, same message as locally
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._call(urllib.request.Request(f"{self.api_url}/api/query/{name}?{query}"))

    def sql(self, text: str) -> QueryResult:
        # judged by the sink's sandbox, which holds the engine that parses it
        data = json.dumps({"sql": text}).encode()
        return self._call(
            urllib.request.Request(f"{self.api_url}/api/sql", data=data, headers={"Content-Type": "application/json"})
        )

    def close(self) -> None:
        pass


def sink_health(api_url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The sink's /health body if a lineage sink answers at `api_url`."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("service") == "lineage-sink" else None


def open_backend(settings: Settings, wait_s: float = 60.0) -> QueryBackend:
    """The running sink's API, else the embedded store opened here.

    The store's owner file (``ownership``) decides between them when no sink answers yet: a
    sink that has claimed the store but is still starting is waited for (up to ``wait_s``)
    instead of racing it to the engine's lock, and so is another command holding the store.
    """
    dsn, db = settings.clickhouse_dsn, settings.clickhouse_database
    if not dsn.startswith("chdb://"):
        return DirectBackend(Store.open(dsn, db), settings.sql)
    deadline = time.monotonic() + wait_s
    api_url = settings.api_url
    while True:
        health = sink_health(api_url)
        if health is not None:
            if health.get("dsn") != dsn or health.get("database") != db:
                raise QueryError(
                    f"the sink at {api_url} serves {health.get('dsn')} (database {health.get('database')}), "
                    f"not {dsn} (database {db})"
                )
            return RemoteBackend(api_url)
        claim = Ownership.try_acquire(dsn)
        if claim is not None:
            return DirectBackend(Store.open(dsn, db, ownership=claim), settings.sql)
        owner = read_owner(dsn)
        if owner is not None and owner.role == "sink":
            if owner.api_url is None:
                raise StoreLockedError(f"the store {dsn} is owned by lineage sink {owner.pid}, which serves no API")
            api_url = owner.api_url  # a starting sink: wait for its API
        if time.monotonic() >= deadline:
            who = f"process {owner.pid}" if owner else "another process"
            raise StoreLockedError(f"the store {dsn} is owned by {who} and no lineage sink answered at {api_url}")
        time.sleep(0.1)
