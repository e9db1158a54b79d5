"""Deliver alert transitions: the alerts topic (-> ClickHouse via the sink) and an optional webhook.

The webhook speaks Alertmanager's webhook JSON (version 4), one notification per transition.
A failed POST is retried with backoff; if it still fails the body is parked in a Redis list,
counted, and re-sent by :meth:`AlertPublisher.retry_pending` on the evaluator's next tick.
Nothing is dropped silently. A failed topic write raises: the caller's tick fails loudly and
the transition is retried on the next evaluation (the Redis state is only advanced after it).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
import aiohttp
import orjson
import redis.asyncio as aioredis

from lineage.keyspace import KeySpace
from stream_apps.alerts.model import Alert, webhook_payload

log = logging.getLogger(__name__)

#: (key, value) -> awaitable that completes when the broker acknowledged the record.
TopicSend = Callable[[bytes, bytes], Awaitable[None]]


class WebhookError(Exception):
    """The webhook answered with an error status or not at all."""


class AlertPublisher:
    """Topic first, then webhook; counters for sent / failed / pending webhook notifications."""

    def __init__(
        self,
        send: TopicSend,
        redis: aioredis.Redis,
        space: KeySpace,
        webhook_url: str | None = None,
        timeout_s: float = 5.0,
        retries: int = 3,
        external_url: str = "",
    ) -> None:
        self.send = send
        self.redis = redis
        self.space = space
        self.webhook_url = webhook_url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries = retries
        self.external_url = external_url

    async def publish(self, alert: Alert) -> None:
        await self.send(alert.fingerprint.encode(), alert.to_topic())
        await self.redis.hincrby(self.space.alert_counters, f"published_{alert.state}", 1)
        if self.webhook_url:
            body = orjson.dumps(webhook_payload([alert], external_url=self.external_url))
            await self._deliver_or_park(body)

    async def _deliver_or_park(self, body: bytes) -> None:
        assert self.webhook_url
        try:
            await post_with_retries(self.webhook_url, body, self.timeout, self.retries)
        except WebhookError as exc:
            log.error("alert webhook %s failed, parked for retry: %s", self.webhook_url, exc)
            await self.redis.rpush(self.space.alert_webhook_pending, body)
            await self.redis.hincrby(self.space.alert_counters, "webhook_failed", 1)
        else:
            await self.redis.hincrby(self.space.alert_counters, "webhook_sent", 1)

    async def retry_pending(self, limit: int = 50) -> int:
        """Re-send parked webhook bodies in order; stops at the first failure. Returns how many went."""
        if not self.webhook_url:
            return 0
        sent = 0
        for _ in range(limit):
            body = await self.redis.lindex(self.space.alert_webhook_pending, 0)
            if body is None:
                break
            try:
                await post_with_retries(self.webhook_url, body if isinstance(body, bytes) else body.encode(), self.timeout, 0)
            except WebhookError:
                await self.redis.hincrby(self.space.alert_counters, "webhook_failed", 1)
                break
            await self.redis.lpop(self.space.alert_webhook_pending)
            await self.redis.hincrby(self.space.alert_counters, "webhook_sent", 1)
            sent += 1
        return sent

    async def counters(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.space.alert_counters)
        out = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        out["webhook_pending"] = int(await self.redis.llen(self.space.alert_webhook_pending))
        return out


async def post_with_retries(url: str, body: bytes, timeout: aiohttp.ClientTimeout, retries: int) -> None:
    """POST `body` as JSON; retry with exponential backoff; WebhookError after the last attempt."""
    delay = 0.5
    last: str = ""
    for attempt in range(retries + 1):
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    if resp.status < 300:
                        return
                    last = f"HTTP {resp.status}: {(await resp.text())[:200]}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if attempt < retries:
            await asyncio.sleep(delay)
            delay *= 2
    raise WebhookError(last)

