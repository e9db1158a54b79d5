"""Browser sessions and the guard's checks, with real keys in Redis and a real HTTP server in process.

Signing in sets an HttpOnly, SameSite=Strict cookie that is not the token; the cookie authorises
requests only to a host name the API serves (DNS rebinding) and from its own origin; revoking or
rotating the key, or signing out, ends the session; a route registered with no rule is refused.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lineage.keyspace import KeySpace
from lineage.settings import Settings
from sinks.access.http import ANY_KEY, PUBLIC, SESSION_COOKIE, Guard, actor_of
from sinks.access.keys import ApiKeys
from sinks.access.roles import Action

pytestmark = [pytest.mark.integration]


@pytest.fixture
def keys(stack: Any, tmp_path: Path) -> Iterator[tuple[Settings, ApiKeys]]:
    from integration.sink_support import deployment

    settings = deployment(stack, tmp_path)
    client = redis.Redis.from_url(settings.redis_url)
    yield settings, ApiKeys(client, KeySpace.of(settings))
    client.close()


async def _who(request: web.Request) -> web.Response:
    actor = actor_of(request)
    return web.json_response({"name": actor.name, "role": actor.role.value})


async def _public(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _app(settings: Settings, keys: ApiKeys) -> web.Application:
    guard = Guard(keys, settings)
    app = web.Application(middlewares=[guard.middleware])
    guard.add_session_routes(app)
    guard.protect([app.router.add_get("/data", _who, allow_head=False)], Action.QUERY)
    guard.protect([app.router.add_post("/change", _who)], Action.QUERY)
    guard.protect([app.router.add_get("/secret", _who, allow_head=False)], Action.DECRYPT)
    guard.protect([app.router.add_get("/open", _who, allow_head=False)], ANY_KEY)
    guard.protect([app.router.add_get("/public", _public, allow_head=False)], PUBLIC)
    app.router.add_get("/forgotten", _who, allow_head=False)  # no rule: refused to everyone
    return app


def _run(settings: Settings, keys: ApiKeys, scenario: Callable[[TestClient, str], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(_app(settings, keys), host="127.0.0.1")) as http:
            await scenario(http, f"http://{http.host}:{http.port}")

    asyncio.run(main())


async def _sign_in(http: TestClient, token: str, **headers: str) -> Any:
    return await http.post("/api/session", json={"token": token}, headers=headers)


def test_sign_in_sets_a_strict_http_only_cookie_that_authorises(keys: tuple[Settings, ApiKeys]) -> None:
    settings, api_keys = keys
    token, _ = api_keys.create("ana", "analyst")

    async def scenario(http: TestClient, origin: str) -> None:
        bad = await _sign_in(http, "lk_wrong")
        assert bad.status == 401 and SESSION_COOKIE not in bad.cookies
        assert (await http.get("/data")).status == 401
        resp = await _sign_in(http, token, Origin=origin)
        assert resp.status == 200 and (await resp.json())["role"] == "analyst"
        header = resp.headers["Set-Cookie"]
        assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header and token not in header
        data = await http.get("/data")
        assert data.status == 200 and await data.json() == {"name": "ana", "role": "analyst"}
        assert (await http.get("/api/session")).status == 200
        assert (await http.get("/secret")).status == 403  # an analyst's session may not decrypt
        assert (await http.get("/public")).status == 200
        assert (await http.get("/forgotten")).status == 403  # fails closed
        out = await http.delete("/api/session", headers={"Origin": origin})
        assert out.status == 204
        assert (await http.get("/data")).status == 401

    _run(settings, api_keys, scenario)


def test_foreign_hosts_and_origins_are_refused(keys: tuple[Settings, ApiKeys]) -> None:
    settings, api_keys = keys
    token, _ = api_keys.create("ana", "analyst")

    async def scenario(http: TestClient, origin: str) -> None:
        assert (await _sign_in(http, token, Host="evil.example:8088")).status == 421
        assert (await _sign_in(http, token, Origin="http://evil.example")).status == 403
        assert (await _sign_in(http, token, Origin=origin)).status == 200
        assert (await http.get("/data", headers={"Host": "evil.example:8088"})).status == 421  # DNS rebinding
        assert (await http.get("/data", headers={"Origin": "http://evil.example"})).status == 403
        assert (await http.post("/change", headers={"Sec-Fetch-Site": "cross-site"})).status == 403
        assert (await http.post("/change", headers={"Origin": origin})).status == 200
        assert (await http.get("/data")).status == 200
        # a script with the key itself is not a browser: any host name, no cookie needed
        bearer = {"Authorization": f"Bearer {token}", "Host": "lineage.internal:8088"}
        http.session.cookie_jar.clear()
        assert (await http.get("/data", headers=bearer)).status == 200

    _run(settings, api_keys, scenario)


@pytest.mark.parametrize("end", ["revoke", "rotate"])
def test_revoking_or_rotating_the_key_ends_its_sessions(keys: tuple[Settings, ApiKeys], end: str) -> None:
    settings, api_keys = keys
    token, _ = api_keys.create("ana", "analyst")

    async def scenario(http: TestClient, origin: str) -> None:
        assert (await _sign_in(http, token, Origin=origin)).status == 200
        assert (await http.get("/open")).status == 200
        getattr(api_keys, end)("ana")
        assert (await http.get("/open")).status == 401

    _run(settings, api_keys, scenario)


def test_a_session_never_outlives_its_key(keys: tuple[Settings, ApiKeys]) -> None:
    settings, api_keys = keys
    token, info = api_keys.create("brief", "auditor", 3600, now=1_000.0)
    secret, _ = api_keys.open_session(token, 43_200, now=1_000.0)
    assert api_keys.session(secret, now=4_000.0) is not None
    assert api_keys.session(secret, now=4_601.0) is None  # the key expired at 4,600
