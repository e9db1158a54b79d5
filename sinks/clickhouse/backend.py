"""Where `lineage query/sql/verify` run: the running sink's API, or the store opened directly.

Embedded chDB can be opened by one process only: when a sink owns the directory it answers on
``settings.api_url`` and everything goes through it, with the CLI's key; when nobody owns it the
CLI opens it (and owns it meanwhile, see ``ownership``): the local administrator's path. A
ClickHouse server is always queried directly. Every query is audited either way.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import Message
from typing import TYPE_CHECKING, Any, Protocol

from sinks.access.audit import QUERY, SQL, audited_query
from sinks.access.credentials import read_api_key
from sinks.access.http import REASON_HEADER
from sinks.clickhouse.client import QueryResult, Store, error_line, store_id
from sinks.clickhouse.ownership import Ownership, read_owner
from sinks.clickhouse.queries import READONLY_SETTINGS, get_query
from sinks.clickhouse.sandbox import SqlSandbox
from sinks.exceptions import AccessError, QueryError, StoreLockedError

if TYPE_CHECKING:
    from lineage.settings import Settings


class QueryBackend(Protocol):
    where: str

    def named(self, name: str, params: dict[str, Any], reason: str = "") -> QueryResult: ...

    def sql(self, text: str, reason: str = "", params: dict[str, Any] | None = None) -> QueryResult: ...

    def close(self) -> None: ...


class DirectBackend:
    """The store opened here, by the local administrator: every query is audited as ``Actor.local()``.

    SQL still goes through the sandbox (as the auditor's table set): direct access is for reading.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        from sinks.access.audit import open_trail
        from sinks.access.roles import Actor

        self.store = store
        self.where = store.dsn
        self.sandbox = SqlSandbox(store, settings.sql)
        self.actor = Actor.local()
        self.audit = open_trail(settings)

    def named(self, name: str, params: dict[str, Any], reason: str = "") -> QueryResult:
        spec = get_query(name)
        bound = spec.bind(params)
        return self._audited(QUERY, name, params, reason, lambda: self.store.query(spec.sql, bound, READONLY_SETTINGS))

    def sql(self, text: str, reason: str = "", params: dict[str, Any] | None = None) -> QueryResult:
        return self._audited(SQL, text, params or {}, reason, lambda: self.sandbox.run(text, "auditor", params))

    def _audited(self, action: str, what: str, params: dict[str, Any], reason: str,
                 run: Callable[[], QueryResult]) -> QueryResult:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        def checked() -> QueryResult:
            try:
                return run()
            except ClickHouseError as exc:  # an engine error is the caller's: one line, recorded
                raise QueryError(error_line(exc)) from None

        return audited_query(self.audit, self.actor, action, what, params, reason, checked)

    def close(self) -> None:
        self.audit.close()
        self.store.close()


class RemoteBackend:
    """The running sink's API, called with the CLI's key (see ``sinks.access.credentials``)."""

    def __init__(self, api_url: str, api_key: str | None, timeout: float = 120.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.where = f"{self.api_url} (lineage sink)"
        self.api_key = api_key
        self.timeout = timeout

    def _headers(self, reason: str) -> dict[str, str]:
        if self.api_key is None:
            raise AccessError(
                "the sink API needs a key: set LINEAGE_API_KEY or store one in the credentials file "
                "(`lineage keys create --role analyst --name NAME --save`)"
            )
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if reason:
            headers[REASON_HEADER] = _header_safe(reason)
        return headers

    def fetch(self, req: urllib.request.Request, timeout: float | None = None) -> tuple[bytes, Message]:
        """(body, headers) of a call to the sink; a refused key is an :class:`AccessError`, any
        other refusal or no answer a one-line :class:`QueryError`."""
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", str(exc))
            except ValueError:
                message = str(exc)
            if exc.code in (401, 403):
                raise AccessError(f"the sink refused the key ({exc.code}): {message}") from None
            raise QueryError(message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise QueryError(f"the sink API at {self.api_url} did not answer: {exc}") from None

    def get(self, path: str, reason: str = "", timeout: float | None = None) -> tuple[bytes, Message]:
        """``GET path`` (with its query string) with the CLI's key and ``reason``."""
        return self.fetch(urllib.request.Request(f"{self.api_url}{path}", headers=self._headers(reason)), timeout)

    def _call(self, req: urllib.request.Request) -> QueryResult:
        body = json.loads(self.fetch(req)[0])
        return QueryResult(body["columns"], body["types"], [tuple(r) for r in body["rows"]])

    def named(self, name: str, params: dict[str, Any], reason: str = "") -> QueryResult:
        get_query(name).bind(params)  # fail fast, same message as locally
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._call(urllib.request.Request(f"{self.api_url}/api/query/{name}?{query}",
                                                 headers=self._headers(reason)))

    def sql(self, text: str, reason: str = "", params: dict[str, Any] | None = None) -> QueryResult:
        # judged by the sink's sandbox, which holds the engine that parses it
        data = json.dumps({"sql": text, "params": params or {}}).encode()
        headers = {"Content-Type": "application/json", **self._headers(reason)}
        return self._call(urllib.request.Request(f"{self.api_url}/api/sql", data=data, headers=headers))

    def close(self) -> None:
        pass


def _header_safe(text: str) -> str:
    """A reason as an HTTP header value: one line of latin-1 (other characters escaped)."""
    one_line = " ".join(text.split())
    return one_line.encode("latin-1", "backslashreplace").decode("latin-1")


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
        return DirectBackend(Store.open(dsn, db), settings)
    deadline = time.monotonic() + wait_s
    api_url = settings.api_url
    while True:
        health = sink_health(api_url)
        if health is not None:
            if health.get("store") != store_id(dsn, db):
                raise QueryError(f"the sink at {api_url} serves another store than {dsn} (database {db})")
            return RemoteBackend(api_url, read_api_key(settings))
        claim = Ownership.try_acquire(dsn)
        if claim is not None:
            return DirectBackend(Store.open(dsn, db, ownership=claim), settings)
        owner = read_owner(dsn)
        if owner is not None and owner.role == "sink":
            if owner.api_url is None:
                raise StoreLockedError(f"the store {dsn} is owned by lineage sink {owner.pid}, which serves no API")
            api_url = owner.api_url  # a starting sink: wait for its API
        if time.monotonic() >= deadline:
            who = f"process {owner.pid}" if owner else "another process"
            raise StoreLockedError(f"the store {dsn} is owned by {who} and no lineage sink answered at {api_url}")
        time.sleep(0.1)
