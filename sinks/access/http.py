"""Who may call which HTTP route: bearer keys, browser sessions and the checks around them.

Every route the API serves is registered with what it needs (:func:`Guard.protect`): an
:class:`~sinks.access.roles.Action`, :data:`ANY_KEY` (any valid key) or :data:`PUBLIC`. A route
registered with nothing is refused to everyone (fail closed). Rules are written per method and
path (``"GET /api/v1/lineage"``) or per path for every method (``"/api/alerts"``); see
:func:`rule_for`. A request authenticates with
``Authorization: Bearer <token>`` (what scripts, the CLI and the OpenLineage HTTP transport's
``api_key`` auth send) or with the session cookie a browser gets by signing in with a key
(``POST /api/session``; HttpOnly, SameSite=Strict, never a token in a URL). Browser requests are
also checked for their ``Host`` (DNS rebinding) and ``Origin`` (cross-site requests); an ``https``
origin with the request's own host is accepted over plain HTTP, which is how a TLS-terminating
proxy in front of the API forwards it.

Answers: 401 without a valid key, 403 for a role without the right, 421 for a browser request
to a host name the API does not serve. A refused request runs no handler and changes nothing.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from sinks.access.keys import ApiKeys, KeyInfo
from sinks.access.roles import Action, Actor, allows

if TYPE_CHECKING:
    from lineage.settings import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "lineage_session"
SESSION_PATH = "/api/session"
REASON_HEADER = "X-Lineage-Reason"
MAX_REASON = 500


class Access(str, Enum):
    PUBLIC = "public"
    ANY_KEY = "any_key"


PUBLIC = Access.PUBLIC
ANY_KEY = Access.ANY_KEY
Need = Action | Access
ACTOR: web.RequestKey[Actor] = web.RequestKey("lineage_actor", Actor)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rule_for(rules: Mapping[str, Need], method: str, path: str) -> Need | None:
    """What a route needs: the rule for ``"METHOD path"``, else the rule for ``path`` (any method).

    ``HEAD`` follows its ``GET`` rule. ``None`` when neither exists: the caller refuses to start.
    So one path can serve methods with different rights (``POST /api/v1/lineage`` is intake,
    ``GET /api/v1/lineage`` a query), and a method added to a path that has only method rules
    gets no right by accident.
    """
    method = method.upper()
    for key in (f"{method} {path}", *((f"GET {path}",) if method == "HEAD" else ()), path):
        if key in rules:
            return rules[key]
    return None


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}),
                        content_type="application/json", headers=headers)


def unauthorized() -> web.Response:
    return _json(401, "a valid API key is required (Authorization: Bearer <token>, or sign in)",
                 {"WWW-Authenticate": 'Bearer realm="lineage"'})


def forbidden(actor: Actor, need: Need) -> web.Response:
    return _json(403, f"key {actor.name!r} ({actor.role.value}) may not {need.value}")


def actor_of(request: web.Request) -> Actor:
    """The authenticated caller of a protected route."""
    return request[ACTOR]


def require(request: web.Request, action: Action) -> web.Response | None:
    """A 403 response if the caller's role lacks ``action`` (for rights that depend on the request)."""
    actor = actor_of(request)
    return None if allows(actor.role, action) else forbidden(actor, action)


def reason_of(request: web.Request, body_reason: str | None = None) -> str:
    """The caller's stated reason: the ``X-Lineage-Reason`` header, else one given in the body."""
    reason = request.headers.get(REASON_HEADER) or body_reason or ""
    return reason.strip()[:MAX_REASON]


def _hostname(host: str) -> str:
    """``Host`` header -> lower-case host name without the port (IPv6 brackets kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _allowed_host(name: str) -> str:
    """A configured host name as :func:`_hostname` gives it: no port, an IPv6 address bracketed."""
    host = _hostname(name)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    return response


class Guard:
    """Authenticates and authorises every request of one app (see the module docstring)."""

    def __init__(self, keys: ApiKeys, settings: Settings) -> None:
        self.keys = keys
        self.settings = settings
        self.needs: dict[AbstractRoute, Need] = {}
        hosts = settings.api.allowed_hosts or (settings.api_host, "localhost", "127.0.0.1", "[::1]")
        self.hosts = frozenset(_allowed_host(h) for h in hosts)

    def protect(self, routes: Iterable[AbstractRoute], need: Need) -> None:
        for route in routes:
            self.needs[route] = need

    # -- the middleware ------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is not None:  # 404 / 405: nothing to protect
            raise match.http_exception
        need = self.needs.get(match.route)
        if need is None:  # a route nobody gave a rule: refused to every caller, whatever key
            log.error("route %s %s has no access rule; refused", request.method, request.path)
            return _json(403, "this route has no access rule")
        if need is PUBLIC:
            return await handler(request)
        actor = await self._authenticate(request)
        if isinstance(actor, web.Response):
            return actor
        if isinstance(need, Action) and not allows(actor.role, need):
            return forbidden(actor, need)
        request[ACTOR] = actor
        return await handler(request)

    async def _authenticate(self, request: web.Request) -> Actor | web.Response:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return unauthorized()
            info = await asyncio.to_thread(self.keys.authenticate, token.strip())
            return unauthorized() if info is None else Actor(info.name, info.role, "api")
        secret = request.cookies.get(SESSION_COOKIE)
        if not secret:
            return unauthorized()
        refused = self.browser_check(request)
        if refused is not None:
            return refused
        info = await asyncio.to_thread(self.keys.session, secret)
        return unauthorized() if info is None else Actor(info.name, info.role, "api")

    def browser_check(self, request: web.Request) -> web.Response | None:
        """Refuse a browser request sent to a foreign host name or from another origin."""
        if _hostname(request.host) not in self.hosts:
            return _json(421, "this API does not serve that host name")
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(request, origin):
            return _json(403, "cross-origin request refused")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is None \
                and request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            return _json(403, "cross-site request refused")
        return None

    # -- signing in ----------------------------------------------------------------------------

    async def sign_in(self, request: web.Request) -> web.Response:
        """``POST /api/session`` with ``{"token": ...}``: a session cookie for this browser.

        A session the browser already had ends here, so one browser holds one session.
        """
        refused = self.browser_check(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
            token = str(body["token"]).strip()
        except (ValueError, KeyError, TypeError):
            return _json(400, 'body must be JSON {"token": "<API key>"}')
        opened = await asyncio.to_thread(self.keys.open_session, token, float(self.settings.api.session_ttl_s))
        if opened is None:
            return unauthorized()
        secret, info = opened
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:
            await asyncio.to_thread(self.keys.close_session, previous)
        response = _no_store(web.Response(body=orjson.dumps(_who(info)), content_type="application/json"))
        # An https Origin means the browser reached us over TLS, through a proxy if not directly.
        secure = request.secure or request.headers.get("Origin", "").lower().startswith("https://")
        response.set_cookie(SESSION_COOKIE, secret, max_age=self.settings.api.session_ttl_s, path="/",
                            httponly=True, samesite="Strict", secure=secure)
        return response

    async def whoami(self, request: web.Request) -> web.Response:
        actor = actor_of(request)
        return _no_store(web.Response(body=orjson.dumps({"name": actor.name, "role": actor.role.value}),
                                      content_type="application/json"))

    async def sign_out(self, request: web.Request) -> web.Response:
        """``DELETE /api/session``: end this browser's session and drop its cookie.

        Needs no live session, so a browser whose session already ended can still clear the cookie.
        """
        secret = request.cookies.get(SESSION_COOKIE)
        if secret:
            refused = self.browser_check(request)
            if refused is not None:
                return refused
            await asyncio.to_thread(self.keys.close_session, secret)
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def add_session_routes(self, app: web.Application) -> None:
        self.protect([app.router.add_post(SESSION_PATH, self.sign_in),
                      app.router.add_delete(SESSION_PATH, self.sign_out)], PUBLIC)
        self.protect([app.router.add_get(SESSION_PATH, self.whoami, allow_head=False)], ANY_KEY)


def _same_origin(request: web.Request, origin: str) -> bool:
    """``Origin`` names this request's own host and port, and is not plain HTTP sent to TLS."""
    scheme, sep, netloc = origin.strip().rstrip("/").lower().partition("://")
    if not sep or netloc != request.host.strip().lower():
        return False
    return scheme == "https" or (scheme == "http" and not request.secure)


def _who(info: KeyInfo) -> dict[str, object]:
    return {"name": info.name, "role": info.role.value, "expires_at": info.expires_at}
