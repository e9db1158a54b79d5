"""API keys: a random token shown once, stored only as its SHA-256, with a name, a role and an expiry.

Kept in Redis under the deployment's key space, so every sink process of a deployment sees the
same keys and a revocation takes effect on the next request. A token is 256 random bits, so an
unsalted SHA-256 is enough to make the stored form useless to whoever reads Redis.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from redis.exceptions import WatchError

from lineage.keyspace import KeySpace
from sinks.access.roles import Role
from sinks.exceptions import AccessError

TOKEN_PREFIX = "lk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_DURATION = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_expiry(text: str | None) -> float | None:
    """``90d``, ``12h``, ``30m``, ``45s`` -> seconds; ``None``/``never`` -> no expiry."""
    if text is None or text == "never":
        return None
    m = _DURATION.match(text.strip())
    if m is None:
        raise AccessError(f"expiry {text!r} is not a duration like 90d, 12h, 30m or 'never'")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is known about a key (never the token)."""

    name: str
    role: Role
    created_at: float
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "role": self.role.value}


class ApiKeys:
    """Create, list, revoke, rotate and check API keys (a sync Redis client)."""

    def __init__(self, redis: Any, space: KeySpace) -> None:
        self.redis = redis
        self.space = space

    def create(self, name: str, role: str, expires_in_s: float | None = None, now: float | None = None) -> tuple[str, KeyInfo]:
        """A new key; returns its token (shown once) and its record. A name is unique."""
        if not _NAME.match(name):
            raise AccessError(f"key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        try:
            parsed = Role(role)
        except ValueError:
            raise AccessError(f"role {role!r}: choose from {', '.join(r.value for r in Role)}") from None
        created = time.time() if now is None else now
        info = KeyInfo(name, parsed, created, None if expires_in_s is None else created + expires_in_s)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_digest(token)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.space.api_key(digest), orjson.dumps(info.to_json()))
        pipe.hsetnx(self.space.api_key_names, name, digest)
        if not pipe.execute()[1]:  # the name was taken: the new record is unreachable, drop it
            self.redis.delete(self.space.api_key(digest))
            raise AccessError(f"a key named {name!r} exists; revoke or rotate it")
        return token, info

    def rotate(self, name: str, now: float | None = None) -> tuple[str, KeyInfo]:
        """A new token for the key ``name`` (same role, expiry restarted from now); the old one stops working."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_digest(token)
        created = time.time() if now is None else now

        def swap(pipe: Any, old_digest: str, old: KeyInfo) -> KeyInfo:
            life = None if old.expires_at is None else old.expires_at - old.created_at
            info = KeyInfo(name, old.role, created, None if life is None else created + life)
            pipe.set(self.space.api_key(digest), orjson.dumps(info.to_json()))
            pipe.hset(self.space.api_key_names, name, digest)
            pipe.delete(self.space.api_key(old_digest))
            return info

        return token, self._change(name, swap)

    def revoke(self, name: str) -> KeyInfo:
        def drop(pipe: Any, digest: str, old: KeyInfo) -> KeyInfo:
            pipe.delete(self.space.api_key(digest))
            pipe.hdel(self.space.api_key_names, name)
            return old

        return self._change(name, drop)

    def _change(self, name: str, change: Callable[[Any, str, KeyInfo], KeyInfo]) -> KeyInfo:
        """Queue ``change`` to the key ``name`` (its pipeline, current digest and record) and run it
        as one transaction, retried if the names change meanwhile: a rotation and a revocation of
        one key never interleave, so a revoked key cannot come back and a rotated one cannot be
        left working but nameless. "No such key" is also only answered from an unchanged read."""
        names = self.space.api_key_names
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(names)
                    digest = _text(pipe.hget(names, name))
                    raw = None if digest is None else pipe.get(self.space.api_key(digest))
                    pipe.multi()
                    result = None if digest is None or raw is None else change(pipe, digest, _info(raw))
                    pipe.execute()  # WatchError if the names changed since they were read
                except WatchError:
                    continue
                if result is None:
                    raise AccessError(f"no key named {name!r}")
                return result

    def get(self, name: str) -> KeyInfo:
        raw = self.redis.get(self.space.api_key(self._digest(name)))
        if raw is None:
            raise AccessError(f"no key named {name!r}")
        return _info(raw)

    def list(self) -> list[KeyInfo]:
        """Every key, by name (one revoked meanwhile is left out rather than failing the list)."""
        digests = [str(_text(d)) for d in self.redis.hvals(self.space.api_key_names)]
        raws = self.redis.mget([self.space.api_key(d) for d in digests]) if digests else []
        return sorted((_info(raw) for raw in raws if raw is not None), key=lambda info: info.name)

    def authenticate(self, token: str, now: float | None = None) -> KeyInfo | None:
        """The key a presented token belongs to, or None (unknown, revoked, rotated away or expired)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        raw = self.redis.get(self.space.api_key(token_digest(token)))
        if raw is None:
            return None
        info = _info(raw)
        return None if info.expired(time.time() if now is None else now) else info

    # -- browser sessions -------------------------------------------------------------------

    def open_session(self, token: str, ttl_s: float, now: float | None = None) -> tuple[str, KeyInfo] | None:
        """Sign in with a key: a new session secret (for a cookie) and the key, or None for a bad token.

        The session lives at most ``ttl_s`` and never past the key's expiry; it ends at once when
        the key is revoked or rotated (it is checked against the key's current token digest).
        """
        info = self.authenticate(token, now)
        if info is None:
            return None
        now = time.time() if now is None else now
        end = now + ttl_s if info.expires_at is None else min(now + ttl_s, info.expires_at)
        secret = secrets.token_urlsafe(32)
        record = {"key": token_digest(token), "expires_at": end}
        self.redis.set(self.space.api_session(token_digest(secret)), orjson.dumps(record), px=max(1, int((end - now) * 1000)))
        return secret, info

    def session(self, secret: str, now: float | None = None) -> KeyInfo | None:
        """The key a session secret signs in as, or None (unknown, expired, or its key revoked or rotated)."""
        raw = self.redis.get(self.space.api_session(token_digest(secret)))
        if raw is None:
            return None
        record = orjson.loads(raw)
        now = time.time() if now is None else now
        if now >= float(record["expires_at"]):
            return None
        key = self.redis.get(self.space.api_key(record["key"]))
        if key is None:
            return None
        info = _info(key)
        return None if info.expired(now) else info

    def close_session(self, secret: str) -> None:
        self.redis.delete(self.space.api_session(token_digest(secret)))

    def _digest(self, name: str) -> str:
        digest = _text(self.redis.hget(self.space.api_key_names, name))
        if digest is None:
            raise AccessError(f"no key named {name!r}")
        return digest


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _info(raw: bytes) -> KeyInfo:
    d = orjson.loads(raw)
    return KeyInfo(d["name"], Role(d["role"]), float(d["created_at"]), d["expires_at"])
