"""Signed checkpoints against a forger with direct write access to the store.

A real `lineage sink` (real Kafka, chDB) writes the raw log and the audit log and signs their
heads; the sink is stopped and the store opened directly with clickhouse-connect, where rows are
rewritten with every later hash and `chain_heads` recomputed exactly as the writer computes them,
or a whole partition and its heads deleted. `lineage verify` must name what changed.
"""
from __future__ import annotations

import json
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from helpers import auth_headers, wait_until
from integration.lineage_scenario import scenario_records
from integration.sink_support import api_sql, free_port, produce, run_cli, start_sink, stop_sink, wait_healthy
from lineage.settings import Settings
from sinks.base import Message
from sinks.clickhouse.chain import row_hash
from sinks.clickhouse.checkpoints import (
    FORMAT, SigningKey, open_checkpoint, public_key_text, publisher_from_settings, read_records, seal, trusted_key,
)
from sinks.clickhouse.client import Store
from sinks.clickhouse.writer import ClickHouseSink

pytestmark = [pytest.mark.integration]

ROUND = len(scenario_records())  # 16 records: partitions 0, 1, 2 get 6, 5, 5 of them


def _by_partition(n: int) -> int:
    return n % 3


def _sink_run(settings: Settings, tmp_path: Path) -> None:
    """Two rounds of the scenario through a real sink, then a clean stop."""
    produce(settings, scenario_records(), partition_of=_by_partition)
    log = tmp_path / "sink.log"
    proc = start_sink(settings, log, "--linger", "0.2")
    try:
        wait_healthy(settings, proc, log)
        wait_until(lambda: api_sql(settings, "SELECT count() FROM raw_events")[0][0] == ROUND, 60, "first round stored")
        wait_until(lambda: read_records(settings), 30, "the first checkpoint")  # published right after its batch
        wait_until(lambda: "lineage_sink_checkpoints_published_total 1\n" in _metrics(settings), 30, "the counter")
        _key_is_out_of_sql_reach(settings)
        _hashes_are_for_auditors(settings)
        # through the running sink's API: the stored hashes come from its named query `verify_hashes`
        code, report = _verify(settings)
        assert code == 0 and report["checkpoint"]["status"] == "valid" and report["problems"] == []
        produce(settings, scenario_records(), partition_of=_by_partition)
        wait_until(lambda: api_sql(settings, "SELECT count() FROM raw_events")[0][0] == 2 * ROUND, 60, "second round stored")
        # the API calls above are audited: their records reach query_audit through the same sink
        wait_until(lambda: api_sql(settings, "SELECT count() FROM query_audit")[0][0] >= 2, 60, "audit rows stored")
    finally:
        assert stop_sink(proc) == 0, log.read_text()[-3000:]


def _metrics(settings: Settings) -> str:
    req = urllib.request.Request(f"{settings.api_url}/metrics", headers=auth_headers(settings))
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def _hashes_are_for_auditors(settings: Settings) -> None:
    query = urllib.parse.urlencode({"ranges": json.dumps([[settings.topics.graph, 0, 0, 100]])})
    url = f"{settings.api_url}/api/query/verify_hashes?{query}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, headers=auth_headers(settings, "analyst")), timeout=30)
    assert refused.value.code == 403
    req = urllib.request.Request(url, headers=auth_headers(settings, "auditor", reason="tamper check"))
    with urllib.request.urlopen(req, timeout=30) as resp:
        rows = json.loads(resp.read())["rows"]
    assert [r[0] for r in rows].count("row") >= 1


def _key_is_out_of_sql_reach(settings: Settings) -> None:
    """The sink holds the key; its SQL path refuses every way of reading the file."""
    key = settings.checkpoint_key_path.resolve()
    assert key.exists()
    for sql in (f"SELECT file('{key}')", f"SELECT * FROM file('{key}', 'RawBLOB')",
                f"SELECT * FROM (SELECT file('{key}') AS k)", f"SELECT * FROM url('file://{key}', 'RawBLOB')"):
        req = urllib.request.Request(f"{settings.api_url}/api/sql", data=json.dumps({"sql": sql}).encode(),
                                     headers={"Content-Type": "application/json", **auth_headers(settings)})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 400, sql
        assert b"PRIVATE KEY" not in refused.value.read()


def _client(settings: Settings) -> Any:
    """The store opened directly, as someone with write access to it would (no API, no sandbox)."""
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    client.database = settings.clickhouse_database
    return client


def _rewrite(settings: Settings, partition: int, offset: int, old: str, new: str) -> None:
    """Change one raw row and recompute every later hash and the chain heads, as the writer would."""
    client = _client(settings)
    try:
        rows = client.query(
            "SELECT topic, kafka_offset, record, prev_hash, row_hash FROM raw_events "
            "WHERE kafka_partition = {p:UInt32} ORDER BY kafka_offset", parameters={"p": partition}).result_rows
        recomputed: dict[int, str] = {}
        prev = ""
        for topic, off, record, prev_hash, digest in rows:
            if off < offset:
                prev = digest
                continue
            if off == offset:
                assert old in record
                record = record.replace(old, new, 1)
            assert off == offset or prev_hash != prev  # the chain really changes from here on
            digest = row_hash(prev, topic, partition, off, record.encode())
            client.command(
                "ALTER TABLE raw_events UPDATE record = {r:String}, prev_hash = {ph:String}, row_hash = {h:String} "
                "WHERE kafka_partition = {p:UInt32} AND kafka_offset = {o:UInt64}",
                parameters={"r": record, "ph": prev, "h": digest, "p": partition, "o": off},
                settings={"mutations_sync": 2})
            recomputed[off] = digest
            prev = digest
        heads = client.query("SELECT DISTINCT last_offset FROM chain_heads WHERE kafka_partition = {p:UInt32} "
                             "AND topic = {t:String}", parameters={"p": partition, "t": rows[0][0]}).result_rows
        for (last,) in heads:
            if last in recomputed:
                client.command(
                    "ALTER TABLE chain_heads UPDATE row_hash = {h:String} WHERE topic = {t:String} "
                    "AND kafka_partition = {p:UInt32} AND last_offset = {o:UInt64}",
                    parameters={"h": recomputed[last], "t": rows[0][0], "p": partition, "o": last},
                    settings={"mutations_sync": 2})
    finally:
        client.close()


def _delete_partition(settings: Settings, partition: int) -> None:
    client = _client(settings)
    try:
        for table in ("raw_events", "chain_heads"):
            client.command(f"ALTER TABLE {table} DELETE WHERE topic = {{t:String}} AND kafka_partition = {{p:UInt32}}",
                           parameters={"t": settings.topics.graph, "p": partition}, settings={"mutations_sync": 2})
    finally:
        client.close()


def _verify(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    res = run_cli(settings, "verify", "--json", *args, check=False)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def _checkpoints(settings: Settings) -> list[Any]:
    trusted = trusted_key(settings)
    assert trusted is not None
    return [open_checkpoint(v, pos, trusted) for pos, v in read_records(settings) or []]


def test_rewritten_row_and_deleted_partition_are_reported(settings_factory: Callable[..., Settings],
                                                          make_topics: Callable[[Settings], list[str]],
                                                          tmp_path: Path) -> None:
    settings = settings_factory(api_port=free_port(), checkpoints={"interval_s": 3600})
    make_topics(settings)
    _sink_run(settings, tmp_path)

    # the signing key: created on first use, owner-only, beside the store, never in it
    key_path = settings.checkpoint_key_path
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600 and key_path.parent == settings.data_dir / "keys"
    assert not key_path.resolve().is_relative_to((settings.data_dir / "clickhouse").resolve())
    assert b"PRIVATE KEY" not in settings.checkpoint_public_key_path.read_bytes()

    # the topic keeps checkpoints for ever
    admin = AdminClient(settings.kafka_common())
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.topics.checkpoints)
    assert admin.describe_configs([res])[res].result()["retention.ms"].value == "-1"

    # one after the first batch, the rest coalesced (interval 1 h) into the one made at shutdown,
    # which signs the heads of both chains as they ended up in the store
    cps = _checkpoints(settings)
    assert [c.valid for c in cps] == [True, True] and [c.seq for c in cps] == [1, 2]
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        stored = {(t, p): (o, h) for t, p, o, h in store.query(
            "SELECT topic, kafka_partition, max(kafka_offset), argMax(row_hash, kafka_offset) FROM "
            "(SELECT topic, kafka_partition, kafka_offset, row_hash FROM raw_events UNION ALL "
            " SELECT topic, kafka_partition, kafka_offset, row_hash FROM query_audit) GROUP BY topic, kafka_partition").rows}
    finally:
        store.close()
    signed = {(h["topic"], h["partition"]): (h["last_offset"], h["head"]) for h in cps[-1].heads}
    assert signed == stored and {h["chain"] for h in cps[-1].heads} == {"raw_events", "query_audit"}

    code, report = _verify(settings)
    assert code == 0 and report["ok"] is True and report["problems"] == []
    assert report["checkpoint"]["status"] == "valid" and report["checkpoint"]["checkpoints"] == 2
    assert report["chains"]["raw_events"] == {"rows": 2 * ROUND, "partitions": 3}

    # partition 0 holds scenario records 0, 3, ..., 15 at offsets 0-5 and again at 6-11: offset 4
    # is record 12, prediction p2 ('approve'). Rewrite it and every hash after it.
    p2, last = scenario_records()[12].event_id, scenario_records()[15].event_id
    _rewrite(settings, 0, 4, '"approve"', '"decline"')
    code, report = _verify(settings)
    assert code == 1 and report["ok"] is False
    got = [(p["topic"], p["kafka_partition"], p["kafka_offset"], p["event_id"], p["problem"], p["gap_from_offset"])
           for p in report["problems"]]
    graph = settings.topics.graph
    # the chains agree with themselves: only the signatures tell
    assert got == [(graph, 0, 4, p2, "not_as_signed", 3), (graph, 0, 11, last, "head_not_as_signed", -1)]

    # a whole partition and its heads gone
    _delete_partition(settings, 2)
    code, report = _verify(settings)
    assert code == 1
    got = [(p["kafka_partition"], p["kafka_offset"], p["problem"]) for p in report["problems"]]
    assert got == [(0, 4, "not_as_signed"), (0, 11, "head_not_as_signed"), (2, 9, "partition_missing")]
    text = run_cli(settings, "verify", check=False)
    assert text.returncode == 1 and "partition_missing" in text.stdout and "not_as_signed" in text.stdout
    assert "Traceback" not in text.stderr


def _fill_with_checkpoints(settings: Settings) -> None:
    """Scenario records in partitions 0-2, written by the sink's writer with its real publisher."""
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        sink = ClickHouseSink(store, [settings.topics.graph], checkpoints=publisher_from_settings(settings))
        for i, rec in enumerate(scenario_records()):
            sink.add(Message(settings.topics.graph, i % 3, i // 3, None, rec.to_bytes()))
        sink.flush()
        sink.finish()
    finally:
        store.close()


def test_checkpoint_signed_by_another_key_is_refused(settings_factory: Callable[..., Settings],
                                                     make_topics: Callable[[Settings], list[str]]) -> None:
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    _fill_with_checkpoints(settings)
    code, report = _verify(settings)
    assert code == 0 and report["checkpoint"]["status"] == "valid"
    real = _checkpoints(settings)[-1]

    # someone who can write the topic publishes heads matching a forged store, with their own key
    forger = SigningKey.load_or_create(settings.data_dir / "elsewhere" / "forged.key")
    heads = [{**h, "head": "f" * 64, "pins": []} for h in real.heads]
    forged = seal(forger, {"format": FORMAT, "ts": real.ts_ms + 1, "seq": real.seq + 1, "heads": heads})
    producer = Producer(settings.kafka_common())
    producer.produce(settings.topics.checkpoints, forged, key=forger.key_id.encode())
    assert producer.flush(30) == 0

    code, report = _verify(settings)
    assert code == 1 and report["ok"] is False and report["checkpoint"]["status"] == "refused"
    refused = report["checkpoint"]["refused"]
    assert len(refused) == 1 and forger.key_id in refused[0]["reason"] and report["checkpoint"]["key_id"] in refused[0]["reason"]
    assert report["problems"] == []  # the forged heads are not believed
    text = run_cli(settings, "verify", check=False)
    assert text.returncode == 1 and "REFUSED" in text.stdout and forger.key_id in text.stdout

    # the trusted key id with a changed payload: a bad signature
    envelope = json.loads(seal(SigningKey.load_or_create(settings.checkpoint_key_path),
                               {"format": FORMAT, "ts": 1, "seq": 9, "heads": []}))
    envelope["payload"] = envelope["payload"].replace('"seq":9', '"seq":10')
    producer.produce(settings.topics.checkpoints, json.dumps(envelope).encode())
    assert producer.flush(30) == 0
    code, report = _verify(settings)
    assert code == 1 and report["checkpoint"]["refused"][-1]["reason"] == "bad signature"


def test_no_checkpoint_is_said_plainly(settings_factory: Callable[..., Settings],
                                       make_topics: Callable[[Settings], list[str]]) -> None:
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    SigningKey.load_or_create(settings.checkpoint_key_path, settings.checkpoint_public_key_path)
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        sink = ClickHouseSink(store, [settings.topics.graph])  # no publisher: nothing signed
        sink.add(Message(settings.topics.graph, 0, 0, None, scenario_records()[0].to_bytes()))
        sink.flush()
    finally:
        store.close()
    code, report = _verify(settings)
    assert code == 0 and report["ok"] is True and report["checkpoint"]["status"] == "none"
    assert "no signed checkpoint" in report["checkpoint"]["message"]
    text = run_cli(settings, "verify", check=False)
    assert "no signed checkpoint on " + settings.topics.checkpoints in text.stdout
    code, report = _verify(settings, "--require-checkpoint")
    assert code == 1



def test_checkpoints_without_a_public_key_fail(settings_factory: Callable[..., Settings],
                                               make_topics: Callable[[Settings], list[str]]) -> None:
    """Deleting the published public key does not turn the signature check off."""
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    _fill_with_checkpoints(settings)
    settings.checkpoint_public_key_path.unlink()
    code, report = _verify(settings)
    assert code == 1 and report["ok"] is False and report["checkpoint"]["status"] == "unverifiable"
    assert "no checkpoint public key" in report["checkpoint"]["message"]
    # the key pinned in the configuration instead
    pinned = settings.model_copy(update={"checkpoints": settings.checkpoints.model_copy(update={
        "public_key": public_key_text(SigningKey.load_or_create(settings.checkpoint_key_path).public)})})
    code, report = _verify(pinned)
    assert code == 0 and report["checkpoint"]["status"] == "valid"


def test_the_sink_refuses_a_signing_key_others_can_read(settings_factory: Callable[..., Settings],
                                                        make_topics: Callable[[Settings], list[str]]) -> None:
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    SigningKey.load_or_create(settings.checkpoint_key_path)
    settings.checkpoint_key_path.chmod(0o644)
    res = run_cli(settings, "sink", "--linger", "0.2", check=False, timeout=90)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"lineage: error: checkpoint signing key {settings.checkpoint_key_path} is open to other users (mode 644); "
        f"run: chmod 600 {settings.checkpoint_key_path}"]
    assert "PRIVATE KEY" not in res.stderr + res.stdout
