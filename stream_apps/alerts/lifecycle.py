"""Alert state in Redis: firing/resolved transitions, de-duplication and a cooldown.

Every evaluator (each stream worker's window timer, the lag monitor) calls :meth:`AlertBook.fire`
whenever it sees a condition hold and :meth:`AlertBook.resolve` (or one of the sweeps) when it
no longer does. The transitions run as Lua scripts, so when several evaluators see the same
condition (standby replicas, two workers, a restarted one) exactly one of them gets the
"notify" answer. The cooldown is the minimum time between two *notified* firings of one
fingerprint: a condition that flaps back within it is recorded (visible in the dashboard and
`lineage alerts`) but not re-notified, and its resolution is silent too.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import redis.asyncio as aioredis

from lineage.keyspace import KeySpace
from stream_apps.alerts.model import FIRING, Alert, now_us

_FIRE = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local ok = true
if tonumber(ARGV[5]) > 0 then
  ok = redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5])
end
if ok then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('LPUSH', KEYS[4], ARGV[2])
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[6]) - 1)
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 2
"""

_RESOLVE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return cur
"""


class AlertBook:
    """Active alerts (hash fingerprint -> alert JSON), last-seen times, cooldowns, history."""

    def __init__(self, redis: aioredis.Redis, space: KeySpace, cooldown_s: float, history_limit: int = 1000) -> None:
        self.redis = redis
        self.space = space
        self.cooldown_ms = int(cooldown_s * 1000)
        self.history_limit = history_limit
        self._fire = redis.register_script(_FIRE)
        self._resolve = redis.register_script(_RESOLVE)

    async def fire(self, alert: Alert, at_us: int | None = None) -> Alert | None:
        """Record that `alert` holds now; the alert to notify if this call made it fire."""
        at = at_us or now_us()
        if alert.state != FIRING:
            raise ValueError("fire() takes a firing alert")
        fresh = replace(alert, starts_at=at, notified=True)
        muted = replace(fresh, notified=False)
        keys = [self.space.alert_active, self.space.alert_seen, self.space.alert_cooldown(alert.fingerprint), self.space.alert_history]
        args: list[str | bytes | int] = [alert.fingerprint, fresh.to_json(), muted.to_json(), at, self.cooldown_ms, self.history_limit]
        outcome = int(await self._fire(keys=keys, args=args))
        return fresh if outcome == 1 else None

    async def resolve(self, fp: str, at_us: int | None = None) -> Alert | None:
        """Resolve one active alert; the resolved alert to notify, if its firing was notified."""
        raw = await self._resolve(keys=[self.space.alert_active, self.space.alert_seen], args=[fp])
        if not raw:
            return None
        done = Alert.from_json(raw).resolved(at_us or now_us())
        if not done.notified:
            return None
        await self.redis.lpush(self.space.alert_history, done.to_json())
        await self.redis.ltrim(self.space.alert_history, 0, self.history_limit - 1)
        return done

    async def undo_fire(self, alert: Alert) -> None:
        """Forget a firing whose notification could not be published (the next tick retries)."""
        await self.redis.hdel(self.space.alert_active, alert.fingerprint)
        await self.redis.delete(self.space.alert_cooldown(alert.fingerprint))
        await self.redis.lrem(self.space.alert_history, 1, alert.to_json().decode())

    async def undo_resolve(self, resolved: Alert) -> None:
        """Put back an alert whose resolution could not be published."""
        firing = replace(resolved, state=FIRING, ends_at=0)
        await self.redis.hsetnx(self.space.alert_active, firing.fingerprint, firing.to_json())
        await self.redis.lrem(self.space.alert_history, 1, resolved.to_json().decode())

    async def active(self, names: Iterable[str] | None = None) -> list[Alert]:
        rows = await self.redis.hgetall(self.space.alert_active)
        wanted = set(names) if names is not None else None
        out = [Alert.from_json(v) for v in rows.values()]
        return sorted(
            (a for a in out if wanted is None or a.name in wanted), key=lambda a: a.starts_at, reverse=True
        )

    async def history(self, limit: int = 100) -> list[Alert]:
        """Most recent notified transitions first (firing and resolved records)."""
        rows = await self.redis.lrange(self.space.alert_history, 0, limit - 1)
        return [Alert.from_json(r) for r in rows]

    async def last_seen(self) -> dict[str, int]:
        rows = await self.redis.hgetall(self.space.alert_seen)
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in rows.items()}

    async def resolve_absent(
        self, names: Iterable[str], holding: Iterable[str], at_us: int | None = None
    ) -> list[Alert]:
        """Resolve active alerts of `names` whose fingerprint is not in `holding` (full evaluators)."""
        keep = set(holding)
        done = []
        for alert in await self.active(names):
            if alert.fingerprint not in keep:
                resolved = await self.resolve(alert.fingerprint, at_us)
                if resolved is not None:
                    done.append(resolved)
        return done

    async def resolve_stale(
        self, names: Iterable[str], max_age_s: float, at_us: int | None = None
    ) -> list[Alert]:
        """Resolve active alerts of `names` nobody re-asserted for `max_age_s` (partial evaluators)."""
        at = at_us or now_us()
        seen = await self.last_seen()
        done = []
        for alert in await self.active(names):
            last = seen.get(alert.fingerprint, alert.starts_at)
            if at - last > max_age_s * 1_000_000:
                resolved = await self.resolve(alert.fingerprint, at)
                if resolved is not None:
                    done.append(resolved)
        return done

