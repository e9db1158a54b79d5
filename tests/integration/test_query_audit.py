"""The query audit log on the real stack: records produced by AuditTrail reach `query_audit` through
the sink exactly once, also when a sink replays the audit topic; `lineage audit log` reads them and
`lineage verify` checks their chain; an unacknowledged record refuses the operation."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_until
from integration.sink_support import (
    committed, free_port, run_cli, sink_group, start_sink, stop_sink, wait_healthy,
)
from lineage.settings import Settings
from sinks.access.audit import KEY_CREATE, SQL, AuditTrail
from sinks.access.roles import Actor, Role
from sinks.exceptions import AuditError

pytestmark = [pytest.mark.integration]


def _record(settings: Settings, actor: Actor, first: int, n: int) -> list[dict[str, Any]]:
    with AuditTrail.from_settings(settings) as trail:
        return [
            trail.record(actor, SQL, f"SELECT count() FROM edges WHERE {i} = {i}", params={"i": i},
                         reason="ticket 42", rows=i, duration_ms=1.5)
            for i in range(first, first + n)
        ]


def _audit_log(settings: Settings, *args: str) -> list[dict[str, Any]]:
    return json.loads(run_cli(settings, "audit", "log", *args, "--json").stdout)


def _sink_consumed(settings: Settings, log: Path, expect: int) -> None:
    """Run the sink until its group committed ``expect`` offsets of the audit topic, then stop it."""
    proc = start_sink(settings, log)
    try:
        wait_healthy(settings, proc, log)
        wait_until(lambda: committed(settings, sink_group(settings), settings.topics.audit, 1)[0] == expect,
                   90, f"the sink to commit {expect} audit offsets")
    finally:
        assert stop_sink(proc) == 0, log.read_text()[-3000:]


def test_records_land_once_across_a_replay_and_read_back(settings_factory, make_topics, tmp_path: Path) -> None:
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    actor = Actor(f"ana-{uuid.uuid4().hex[:6]}", Role.ANALYST, "api")
    other = Actor("ops", Role.ADMIN, "cli")
    first = _record(settings, actor, 0, 3)
    with AuditTrail.from_settings(settings) as trail:
        trail.record(other, KEY_CREATE, "svc", params={"role": "emitter", "expires": "never"}, rows=1)
    _sink_consumed(settings, tmp_path / "sink.log", 4)

    # a second sink group reads the whole audit topic again: a replay of what is stored
    replay = settings.model_copy(update={"app_id": settings.app_id + "-replay"})
    later = _record(replay, actor, 3, 2)
    _sink_consumed(replay, tmp_path / "sink.log", 6)

    mine = _audit_log(replay, "--who", actor.name)
    assert [r["what"] for r in mine] == [e["what"] for e in reversed(first + later)]  # newest first, once each
    top = mine[0]
    assert (top["who"], top["role"], top["via"], top["action"]) == (actor.name, "analyst", "api", "sql")
    assert (top["reason"], top["rows"], top["duration_ms"], top["outcome"]) == ("ticket 42", 4, 1.5, "ok")
    assert top["params"] == {"i": 4} and top["details"] == {}
    assert [r["what"] for r in _audit_log(replay, "--action", "key.create")] == ["svc"]
    assert len(_audit_log(replay, "--since", "1h", "--limit", "2")) == 2

    report = json.loads(run_cli(replay, "verify", "--json").stdout)
    assert report["ok"] is True and report["chains"]["query_audit"] == {"rows": 6, "partitions": 1}
    bad = run_cli(replay, "audit", "log", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "bad time 'yesterday'" in bad.stderr


def test_an_unacknowledged_record_refuses_the_operation() -> None:
    nobody = f"127.0.0.1:{free_port()}"  # no broker listens here
    trail = AuditTrail({"bootstrap.servers": nobody, "enable.idempotence": True, "acks": "all"}, "x.audit", 2.0)
    released = []
    try:
        with pytest.raises(AuditError, match="not acknowledged by Kafka.*refusing decrypt"):
            with trail.attempt(Actor.local(), "decrypt", "pii-store:v1/p", reason="appeal"):
                pass  # the operation's work; its result is released only after the block
            released.append(True)
    finally:
        trail.close()
    assert not released
