"""Browser sessions and the guard's checks: real keys in Redis, a real HTTP server in process.

Signing in sets an HttpOnly, SameSite=Strict cookie that is not the token; the cookie authorises
requests only to a host name the API serves (DNS rebinding) and from its own origin; signing out,
revoking or rotating the key ends the session on the server; a route registered with no rule is
refused to every caller. A refused request runs no handler.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lineage.keyspace import KeySpace
from lineage.settings import ApiSettings, Settings
from sinks.access.http import ANY_KEY, PUBLIC, SESSION_COOKIE, Guard, actor_of
from sinks.access.keys import ApiKeys
from sinks.access.roles import Action

pytestmark = [pytest.mark.integration]

EVIL_HOST = "evil.example:8088"
EVIL_ORIGIN = "http://evil.example"


@pytest.fixture
def keys(test_settings: Settings) -> Iterator[ApiKeys]:
    client = redis.Redis.from_url(test_settings.redis_url)
    api_keys = ApiKeys(client, KeySpace.of(test_settings))
    try:
        yield api_keys
    finally:
        for name in client.scan_iter(f"{api_keys.space.prefix}:access:*"):
            client.delete(name)
        client.close()


@dataclass
class Site:
    """The app under test, seen from a client: ``ran`` lists the paths whose handler ran."""

    http: TestClient
    origin: str
    ran: list[str]

    async def sign_in(self, token: str, **headers: str) -> Any:
        return await self.http.post("/api/session", json={"token": token}, headers=headers)

    async def status(self, method: str, path: str, **headers: str) -> int:
        async with self.http.request(method, path, headers=headers) as resp:
            return resp.status

    async def as_session(self, secret: str, method: str, path: str, **headers: str) -> int:
        """``path`` sent with exactly this session cookie (the client's own jar emptied)."""
        self.http.session.cookie_jar.clear()
        return await self.status(method, path, Cookie=f"{SESSION_COOKIE}={secret}", **headers)


def _app(settings: Settings, keys: ApiKeys, ran: list[str]) -> web.Application:
    async def who(request: web.Request) -> web.Response:
        ran.append(request.path)
        actor = actor_of(request)
        return web.json_response({"name": actor.name, "role": actor.role.value})

    async def public(request: web.Request) -> web.Response:
        ran.append(request.path)
        return web.Response(text="ok")

    guard = Guard(keys, settings)
    app = web.Application(middlewares=[guard.middleware])
    guard.add_session_routes(app)
    guard.protect([app.router.add_get("/data", who, allow_head=False)], Action.QUERY)
    guard.protect([app.router.add_post("/change", who)], Action.QUERY)
    guard.protect([app.router.add_get("/secret", who, allow_head=False)], Action.DECRYPT)
    guard.protect([app.router.add_get("/open", who, allow_head=False)], ANY_KEY)
    guard.protect([app.router.add_get("/health", public, allow_head=False)], PUBLIC)
    app.router.add_get("/forgotten", who, allow_head=False)  # no rule: refused to everyone
    # add_get also adds HEAD; only the GET route is given a rule, so HEAD has none
    guard.protect([app.router.add_get("/half", who)], Action.QUERY)
    return app


def _run(settings: Settings, keys: ApiKeys, scenario: Callable[[Site], Awaitable[None]]) -> None:
    async def main() -> None:
        ran: list[str] = []
        async with TestClient(TestServer(_app(settings, keys, ran), host="127.0.0.1")) as http:
            await scenario(Site(http, f"http://{http.host}:{http.port}", ran))

    asyncio.run(main())


def _cookie(resp: Any) -> tuple[str, str]:
    """The session cookie a response sets: (its value, its Set-Cookie header)."""
    (header,) = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith(f"{SESSION_COOKIE}=")]
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar[SESSION_COOKIE].value, header


def _stored(keys: ApiKeys) -> bytes:
    """Every name and value under the deployment's access prefix."""
    out = b""
    for name in keys.redis.scan_iter(f"{keys.space.prefix}:access:*"):
        kind = keys.redis.type(name)
        value = keys.redis.get(name) if kind == b"string" else b"".join(a + b for a, b in keys.redis.hgetall(name).items())
        out += name + b"\n" + value + b"\n"
    return out


def test_sign_in_sets_a_strict_http_only_cookie_that_authorises(test_settings: Settings, keys: ApiKeys) -> None:
    token, _ = keys.create("ana", "analyst")

    async def scenario(site: Site) -> None:
        assert await site.status("GET", "/data") == 401
        assert await site.status("GET", "/data", Authorization="Basic YW5hOng=") == 401
        bad = await site.sign_in("lk_wrong", Origin=site.origin)
        assert bad.status == 401 and "Set-Cookie" not in bad.headers
        for body in (b"not json", b'{"tok": "x"}', b"[]", b"null"):
            resp = await site.http.post("/api/session", data=body, headers={"Content-Type": "application/json"})
            assert resp.status == 400 and "Set-Cookie" not in resp.headers
        assert site.ran == []

        resp = await site.sign_in(token, Origin=site.origin)
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        assert {k: v for k, v in (await resp.json()).items() if k != "expires_at"} == {"name": "ana", "role": "analyst"}
        secret, header = _cookie(resp)
        attrs = [a.strip().lower() for a in header.split(";")[1:]]
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
        assert f"max-age={test_settings.api.session_ttl_s}" in attrs and "secure" not in attrs  # plain HTTP
        assert token not in header and token[3:] not in header and secret != token
        stored = _stored(keys)  # Redis holds digests of both, never the token or the session secret
        assert token[3:].encode() not in stored and secret.encode() not in stored

        data = await site.http.get("/data")
        assert data.status == 200 and await data.json() == {"name": "ana", "role": "analyst"}
        me = await site.http.get("/api/session")
        assert me.status == 200 and await me.json() == {"name": "ana", "role": "analyst"}
        assert me.headers["Cache-Control"] == "no-store"

    _run(test_settings, keys, scenario)


def test_signing_out_ends_the_session_on_the_server(test_settings: Settings, keys: ApiKeys) -> None:
    token, _ = keys.create("ana", "analyst")

    async def scenario(site: Site) -> None:
        first, _ = _cookie(await site.sign_in(token, Origin=site.origin))
        second, _ = _cookie(await site.sign_in(token, Origin=site.origin))  # replaces the browser's first
        assert await site.as_session(first, "GET", "/data") == 401
        assert await site.as_session(second, "GET", "/data") == 200

        out = await site.http.delete("/api/session", headers={"Origin": site.origin, "Cookie": f"{SESSION_COOKIE}={second}"})
        assert out.status == 204
        _, header = _cookie(out)
        assert "max-age=0" in header.lower()  # the browser drops it
        assert await site.as_session(second, "GET", "/data") == 401  # and the server forgot it

        # An ended session's cookie can still be cleared; no cookie at all: nothing to do.
        gone = await site.http.delete("/api/session", headers={"Origin": site.origin, "Cookie": f"{SESSION_COOKIE}={second}"})
        assert gone.status == 204 and "max-age=0" in _cookie(gone)[1].lower()
        assert await site.status("DELETE", "/api/session") == 204

    _run(test_settings, keys, scenario)


def test_foreign_hosts_and_origins_are_refused(test_settings: Settings, keys: ApiKeys) -> None:
    token, _ = keys.create("ana", "analyst")

    async def scenario(site: Site) -> None:
        other_port = site.origin.rsplit(":", 1)[0] + ":1"  # another port is another origin
        for headers in ({"Host": EVIL_HOST}, {"Origin": EVIL_ORIGIN}, {"Origin": "null"}, {"Origin": other_port},
                        {"Sec-Fetch-Site": "cross-site"}):
            refused = await site.sign_in(token, **headers)  # no login CSRF
            assert refused.status in (403, 421) and "Set-Cookie" not in refused.headers, headers
        assert (await site.sign_in(token, Host=EVIL_HOST)).status == 421

        secret, _ = _cookie(await site.sign_in(token, Origin=site.origin))
        assert await site.as_session(secret, "GET", "/data", Host=EVIL_HOST) == 421  # DNS rebinding
        assert await site.as_session(secret, "GET", "/data", Host="127.0.0.1.evil.example") == 421
        for origin in (EVIL_ORIGIN, "null", other_port, f"https://evil.example:{site.http.port}"):
            assert await site.as_session(secret, "GET", "/data", Origin=origin) == 403, origin
        for fetch_site in ("cross-site", "same-site", "none"):  # a write without Origin: only from its own page
            assert await site.as_session(secret, "POST", "/change", **{"Sec-Fetch-Site": fetch_site}) == 403
        assert await site.as_session(secret, "DELETE", "/api/session", Origin=EVIL_ORIGIN) == 403  # no forced sign-out
        assert site.ran == []

        assert await site.as_session(secret, "POST", "/change", Origin=site.origin) == 200
        assert await site.as_session(secret, "POST", "/change", **{"Sec-Fetch-Site": "same-origin"}) == 200
        assert await site.as_session(secret, "GET", "/data") == 200
        # A script with the key itself is not a browser: any host name, no cookie.
        site.http.session.cookie_jar.clear()
        assert await site.status("GET", "/data", Authorization=f"Bearer {token}", Host="lineage.internal:8088") == 200

    _run(test_settings, keys, scenario)


def test_allowed_hosts_name_the_hosts_a_browser_may_use(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(api=ApiSettings(allowed_hosts=("Dash.Example:8088", "fe80::1")))
    client = redis.Redis.from_url(settings.redis_url)
    keys = ApiKeys(client, KeySpace.of(settings))
    token, _ = keys.create("ana", "analyst")

    async def scenario(site: Site) -> None:
        secret, _ = _cookie(await site.sign_in(token, Host="dash.example:8088"))
        assert await site.as_session(secret, "GET", "/data", Host="DASH.example:8088") == 200
        assert await site.as_session(secret, "GET", "/data", Host="[fe80::1]:8088") == 200
        assert await site.as_session(secret, "GET", "/data") == 421  # 127.0.0.1 is not listed any more

    try:
        _run(settings, keys, scenario)
    finally:
        for name in client.scan_iter(f"{keys.space.prefix}:access:*"):
            client.delete(name)
        client.close()


def test_behind_a_tls_proxy_the_cookie_is_secure(test_settings: Settings, keys: ApiKeys) -> None:
    """A proxy that ends TLS forwards plain HTTP with the browser's ``https`` Origin and Host."""
    token, _ = keys.create("ana", "analyst")

    async def scenario(site: Site) -> None:
        https = f"https://{site.http.host}:{site.http.port}"
        resp = await site.sign_in(token, Origin=https)
        assert resp.status == 200
        secret, header = _cookie(resp)
        assert "secure" in [a.strip().lower() for a in header.split(";")]
        assert await site.as_session(secret, "POST", "/change", Origin=https) == 200

    _run(test_settings, keys, scenario)


def test_a_session_has_its_key_s_rights_only(test_settings: Settings, keys: ApiKeys) -> None:
    analyst, _ = keys.create("ana", "analyst")
    emitter, _ = keys.create("ingest", "emitter")

    async def scenario(site: Site) -> None:
        assert (await site.sign_in(analyst, Origin=site.origin)).status == 200
        assert await site.status("GET", "/secret") == 403  # an analyst may not decrypt
        assert (await site.sign_in(emitter, Origin=site.origin)).status == 200  # any valid key signs in
        assert await site.status("GET", "/data") == 403  # but an emitter may not query
        assert site.ran == []
        assert await site.status("GET", "/open") == 200
        assert await site.status("GET", "/api/session") == 200

    _run(test_settings, keys, scenario)


def test_public_routes_need_nothing_and_unruled_routes_are_refused_to_all(test_settings: Settings, keys: ApiKeys) -> None:
    admin, _ = keys.create("root", "admin")

    async def scenario(site: Site) -> None:
        assert await site.status("GET", "/health") == 200
        assert await site.status("GET", "/health", Host=EVIL_HOST, Authorization="Bearer lk_wrong") == 200
        assert site.ran == ["/health", "/health"]
        site.ran.clear()
        bearer = {"Authorization": f"Bearer {admin}"}
        assert await site.status("GET", "/forgotten") == 403
        assert await site.status("GET", "/forgotten", **bearer) == 403  # fails closed, even for admin
        assert await site.status("HEAD", "/half", **bearer) == 403
        assert (await site.sign_in(admin, Origin=site.origin)).status == 200
        assert await site.status("GET", "/forgotten") == 403
        assert site.ran == []
        assert await site.status("GET", "/half", **bearer) == 200

    _run(test_settings, keys, scenario)


@pytest.mark.parametrize("end", ["revoke", "rotate"])
def test_revoking_or_rotating_the_key_ends_its_sessions(test_settings: Settings, keys: ApiKeys, end: str) -> None:
    token, _ = keys.create("ana", "analyst")

    async def scenario(site: Site) -> None:
        assert (await site.sign_in(token, Origin=site.origin)).status == 200
        assert await site.status("GET", "/open") == 200
        new = getattr(keys, end)("ana")
        assert await site.status("GET", "/open") == 401
        assert await site.status("GET", "/api/session") == 401
        assert (await site.sign_in(token, Origin=site.origin)).status == 401
        if end == "rotate":
            assert (await site.sign_in(new[0], Origin=site.origin)).status == 200
            assert await site.status("GET", "/open") == 200

    _run(test_settings, keys, scenario)


def test_a_session_never_outlives_its_ttl_or_its_key(keys: ApiKeys) -> None:
    token, _ = keys.create("brief", "auditor", 3600, now=1_000.0)
    opened = keys.open_session(token, 43_200, now=1_000.0)
    assert opened is not None
    assert keys.session(opened[0], now=4_599.0) is not None
    assert keys.session(opened[0], now=4_600.0) is None  # the key expired at 4,600
    forever, _ = keys.create("long", "auditor")
    short = keys.open_session(forever, 600, now=1_000.0)
    assert short is not None
    assert keys.session(short[0], now=1_599.0) is not None
    assert keys.session(short[0], now=1_600.0) is None  # the session's own TTL
    assert keys.open_session(token, 600, now=4_600.0) is None  # an expired key cannot sign in
