"""Dead-letter keys on a real Redis: one per period, destroyed after their retention with their dead letters."""
from __future__ import annotations

import pytest
import redis

from lineage.deadletters import (
    dead_letter_headers,
    deadletter_key_day,
    deadletter_key_ref,
    open_dead_letter,
    prune_deadletter_keys,
    seal_aad,
)
from lineage.pii.crypto import seal
from lineage.pii.exceptions import SubjectErased
from lineage.pii.keys import DataKeys

pytestmark = [pytest.mark.integration]
DAY = 86_400.0


def test_period_keys_are_renewed_and_destroyed_after_retention(settings_factory) -> None:
    s = settings_factory()
    client = redis.Redis.from_url(s.redis_url)
    keys = DataKeys.from_settings(s, client)
    now = 1_790_000_000.0
    refs = [deadletter_key_ref(now - d * DAY, 1) for d in (0, 10, 31, 45)]
    assert len(set(refs)) == 4 and all(deadletter_key_day(r) is not None for r in refs)
    week = deadletter_key_ref(now, 7)  # a 7-day period: one key for the whole week
    assert [deadletter_key_ref(now + d * DAY, 7) == week for d in range(-7, 8)].count(True) == 7
    deks = keys.get_or_create(refs)
    sealed = {}
    for i, ref in enumerate(refs):
        dek = deks[ref]
        assert dek is not None
        nonce, ct = seal(dek, f"letter {i}".encode(), seal_aad("t.x", 0, i))
        sealed[ref] = (nonce + ct, dict(dead_letter_headers([], "bad_magic", "d", "t.x", 0, i, key_ref=ref)))
    subject = keys.subject_ref("someone")
    keys.get_or_create([subject])

    assert prune_deadletter_keys(keys, now, retention_days=30, period_days=1) == 2  # 31 and 45 days old
    for ref in refs[:2]:
        value, headers = sealed[ref]
        assert open_dead_letter(keys, value, headers).startswith(b"letter ")
    for ref in refs[2:]:
        value, headers = sealed[ref]
        with pytest.raises(SubjectErased):
            open_dead_letter(keys, value, headers)
    assert keys.get(subject)  # subjects' keys are never touched
    assert prune_deadletter_keys(keys, now, retention_days=30, period_days=1) == 0
    client.close()
