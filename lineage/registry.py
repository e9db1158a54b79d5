"""A small Confluent Schema Registry client (stdlib HTTP only).

Two calls are all the codec needs: register a subject's schema (getting its global id) and
fetch a writer schema by id. Both are cached for the life of the client: an id never changes
meaning, and re-registering an identical schema returns the same id.
Subjects follow the TopicNameStrategy (``<topic>-value``); the caller passes them in.
"""
from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from lineage.exceptions import SchemaError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(SchemaError):
    """The registry refused a request or could not be reached.

    ``status`` is the HTTP status (None when unreachable), ``error_code`` Confluent's code
    (e.g. 40403 schema not found, 409 incompatible schema, also from registries that send 0).
    """

    def __init__(self, message: str, status: int | None = None, error_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code

    @property
    def not_found(self) -> bool:
        return self.status == 404


class SchemaRegistry:
    """Confluent Schema Registry over HTTP; ``user:password@`` in the URL means basic auth."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SchemaError(f"schema registry URL must be http(s)://host[:port]: {url!r}")
        self._headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if parts.username is not None:
            cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        self.url = urllib.parse.urlunsplit(parts).rstrip("/")
        self.timeout = timeout
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SchemaRegistry({self.url!r})"

    def register(self, subject: str, schema_json: str | Mapping[str, Any]) -> int:
        """Register ``schema_json`` under ``subject`` (idempotent); return its global schema id."""
        text = schema_json if isinstance(schema_json, str) else json.dumps(schema_json, separators=(",", ":"))
        key = (subject, text)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        body = self._request("POST", path, {"schemaType": "AVRO", "schema": text})
        schema_id = body.get("id")
        if not isinstance(schema_id, int):
            raise RegistryError(f"POST {path}: response has no integer id: {body!r}")
        with self._lock:
            self._ids[key] = schema_id
            self._schemas.setdefault(schema_id, json.loads(text))
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """The schema with global id ``schema_id`` as parsed JSON. 404 -> RegistryError.not_found."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        path = f"/schemas/ids/{int(schema_id)}"
        body = self._request("GET", path)
        if body.get("schemaType", "AVRO") != "AVRO":
            raise RegistryError(f"GET {path}: schema {schema_id} is {body['schemaType']}, not AVRO")
        try:
            schema = json.loads(body["schema"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"GET {path}: unreadable schema in response: {exc}") from exc
        with self._lock:
            self._schemas[schema_id] = schema
        return schema  # type: ignore[no-any-return]

    def subjects(self) -> list[str]:
        """Every subject the registry knows (also a cheap health check: ``GET /subjects``)."""
        body = self._send("GET", "/subjects")
        if not isinstance(body, list):
            raise RegistryError(f"schema registry GET /subjects: unexpected response {body!r}")
        return [str(s) for s in body]

    def _request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = self._send(method, path, payload)
        if not isinstance(body, dict):
            raise RegistryError(f"schema registry {method} {path}: unexpected response {body!r}")
        return body

    def _send(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            code: int | None = None
            try:
                err = json.loads(detail)
                code, detail = err.get("error_code"), err.get("message", detail)
            except (ValueError, AttributeError):
                pass
            if exc.code == 409 and not code:
                # Apicurio's Confluent API answers an incompatible schema with error_code 0;
                # Confluent's own code for it is 409, which is what callers test.
                code = 409
            raise RegistryError(
                f"schema registry {method} {path}: HTTP {exc.code}: {detail}", exc.code, code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(f"schema registry {self.url} unreachable ({method} {path}): {reason}") from None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"schema registry {method} {path}: response is not JSON: {exc}") from None
