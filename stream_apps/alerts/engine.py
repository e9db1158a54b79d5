"""Evaluators talk to this: `fire` / `resolve_*` change state in Redis and publish transitions."""
from __future__ import annotations

import logging
from collections.abc import Iterable

import redis.asyncio as aioredis

from lineage.keyspace import KeySpace
from lineage.settings import Settings
from stream_apps.alerts.config import AlertSettings, alert_settings
from stream_apps.alerts.lifecycle import AlertBook
from stream_apps.alerts.model import Alert
from stream_apps.alerts.publish import AlertPublisher, TopicSend

log = logging.getLogger(__name__)


class AlertEngine:
    """State (AlertBook) + delivery (AlertPublisher); a transition counts once it was published."""

    def __init__(self, book: AlertBook, publisher: AlertPublisher) -> None:
        self.book = book
        self.publisher = publisher

    async def fire(self, alert: Alert) -> Alert | None:
        notify = await self.book.fire(alert)
        if notify is not None:
            try:
                await self.publisher.publish(notify)
            except Exception:
                await self.book.undo_fire(notify)
                raise
            log.warning("alert firing: %s %s", alert.name, alert.summary)
        return notify

    async def _publish_resolved(self, done: Iterable[Alert]) -> list[Alert]:
        out = []
        for alert in done:
            try:
                await self.publisher.publish(alert)
            except Exception:
                await self.book.undo_resolve(alert)
                raise
            log.warning("alert resolved: %s %s", alert.name, alert.summary)
            out.append(alert)
        return out

    async def resolve(self, fp: str) -> Alert | None:
        done = await self.book.resolve(fp)
        return (await self._publish_resolved([done]))[0] if done else None

    async def resolve_absent(self, names: Iterable[str], holding: Iterable[str]) -> list[Alert]:
        return await self._publish_resolved(await self.book.resolve_absent(names, holding))

    async def resolve_stale(self, names: Iterable[str], max_age_s: float) -> list[Alert]:
        return await self._publish_resolved(await self.book.resolve_stale(names, max_age_s))

    async def tick(self) -> None:
        """Housekeeping each evaluation: re-send parked webhook notifications."""
        await self.publisher.retry_pending()


def build_engine(settings: Settings, send: TopicSend, redis: aioredis.Redis | None = None) -> AlertEngine:
    cfg: AlertSettings = alert_settings(settings)
    r = redis or aioredis.from_url(settings.redis_url)
    space = KeySpace.of(settings)
    book = AlertBook(r, space, cfg.cooldown_s, cfg.history_limit)
    pub = AlertPublisher(
        send, r, space, cfg.webhook_url, cfg.webhook_timeout_s, cfg.webhook_retries, external_url=settings.api_url
    )
    return AlertEngine(book, pub)
