"""`remove_deployment` (what `lineage bench pipeline` runs when it ends) on the real broker and
Redis: a throwaway deployment's topics, consumer groups and keys all go; a neighbour sharing the
stack keeps every one of its own; a group that still has a member is named, not skipped quietly."""
from __future__ import annotations

import time

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import wait_until
from lineage.exceptions import StackError
from lineage.keyspace import KeySpace
from lineage.settings import Settings
from lineage.topics import owned_by, remove_deployment

pytestmark = [pytest.mark.integration]


def _commit(s: Settings, group: str, topic: str) -> None:
    """Make ``group`` exist on the broker, with no member: one committed offset."""
    c = Consumer({**s.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()


def _groups(admin: AdminClient) -> set[str]:
    return {g.group_id for g in admin.list_consumer_groups(request_timeout=30).result().valid}


def _keys(client: redis.Redis, s: Settings) -> set[bytes]:
    return set(client.scan_iter(match=KeySpace.of(s).every_key(), count=10_000))


def _deployment(settings_factory, make_topics) -> Settings:
    s = settings_factory()
    make_topics(s)
    client = redis.Redis.from_url(s.redis_url)
    for group in (s.app_id, s.events_group, f"{s.app_id}.passthrough"):
        _commit(s, group, s.topics.graph)
    space = KeySpace.of(s)
    client.set(space.run("r1"), b"x")
    client.hset(space.stats(s.app_id), "accepted", 1)
    for i in range(2_500):  # more than one UNLINK batch
        client.set(space.hold(f"p{i}"), b"sealed")
    return s


def test_a_throwaway_deployment_leaves_nothing_and_its_neighbour_keeps_everything(settings_factory, make_topics) -> None:
    gone, kept = (_deployment(settings_factory, make_topics) for _ in range(2))
    client = redis.Redis.from_url(gone.redis_url)
    admin = AdminClient(gone.kafka_common())
    topics = set(admin.list_topics(timeout=30).topics)
    before_gone, before_kept = owned_by(gone, topics), owned_by(kept, topics)
    groups_kept, keys_kept = set(owned_by(kept, _groups(admin))), _keys(client, kept)
    assert before_gone and before_kept and len(groups_kept) == 3 and len(keys_kept) == 2_502

    removed = remove_deployment(gone, client)

    assert removed == {"topics": len(before_gone), "groups": 3, "keys": 2_502}
    wait_until(lambda: not owned_by(gone, admin.list_topics(timeout=30).topics), 60, "the topics to be gone")
    assert not owned_by(gone, _groups(admin)) and not _keys(client, gone)
    topics = set(admin.list_topics(timeout=30).topics)
    assert set(owned_by(kept, topics)) == set(before_kept)
    assert set(owned_by(kept, _groups(admin))) == groups_kept and _keys(client, kept) == keys_kept


def test_a_group_with_a_member_is_named_and_the_rest_still_goes(settings_factory, make_topics) -> None:
    s = settings_factory()
    make_topics(s)
    client = redis.Redis.from_url(s.redis_url)
    client.set(KeySpace.of(s).run("r1"), b"x")
    member = Consumer({**s.kafka_common(), "group.id": s.events_group, "auto.offset.reset": "earliest"})
    try:
        assigned: list[int] = []
        member.subscribe([s.topics.graph], on_assign=lambda _c, parts: assigned.append(len(parts)))
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            member.poll(0.2)
        assert assigned, "the member never joined"
        with pytest.raises(StackError, match=rf"could not remove {s.events_group} \(NON_EMPTY_GROUP\)"):
            remove_deployment(s, client)
        assert not _keys(client, s)
        wait_until(lambda: not owned_by(s, AdminClient(s.kafka_common()).list_topics(timeout=30).topics), 60,
                   "the topics to be gone")
    finally:
        member.close()
