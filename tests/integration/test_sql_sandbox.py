"""The SQL sandbox against the embedded engine: each known attack is refused and leaves no trace.

Needs chDB only (no Kafka): the store is filled with the June 2024 scenario.
"""
from __future__ import annotations

from collections.abc import Iterator
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import ClickHouseError
from hypothesis import HealthCheck, given, settings, strategies as st

from integration.lineage_scenario import scenario_store
from helpers import auth_headers
from integration.sink_support import api_client, deployment
from lineage.settings import ApiSettings, Settings, SqlSettings
from sinks.clickhouse.client import Store
from sinks.clickhouse.sandbox import SqlSandbox
from sinks.exceptions import QueryRefused

pytestmark = [pytest.mark.integration]

SECRET = "kek-secret-3f9c1b"
ROLES = ("analyst", "auditor")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sandbox")
    (path / "keys").mkdir()
    (path / "keys" / "kek.key").write_text(SECRET)
    return path


@pytest.fixture(scope="module")
def store(data_dir: Path) -> Iterator[Store]:
    with scenario_store(data_dir / "clickhouse") as store:
        yield store


@pytest.fixture(scope="module")
def sandbox(store: Store) -> SqlSandbox:
    return SqlSandbox(store, SqlSettings())


def tables(store: Store) -> set[str]:
    return {r[0] for r in store.query("SELECT name FROM system.tables WHERE database = 'lineage'").rows}


def attacks(data_dir: Path) -> list[str]:
    return [
        "SELECT file('/etc/hostname')",
        f"SELECT file('{data_dir}/keys/kek.key')",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
        f"SELECT 1 INTO OUTFILE '{data_dir}/x'",
        "SELECT 1 SETTINGS readonly=0",
        "SELECT 1 /* ' */; CREATE TABLE t (x UInt8) ENGINE=Memory; SELECT 1 /* ' */",
        "INSERT INTO edges (src) VALUES ('x')",
        "SET readonly = 0",
        "CREATE TABLE t (x UInt8) ENGINE = Memory",
        "SELECT * FROM system.tables",
        "SELECT 1 WHERE 'a' IN lineage.raw_events AND dictGet('d', 'x', 1) = 1",
        f"SELECT `x (children 1)\n     Literal 'a'` FROM (SELECT file('{data_dir}/keys/kek.key') AS `x (children 1)\n     Literal 'a'`)",
        "SELECT 1 FORMAT JSON",
    ]


@pytest.mark.parametrize("role", ROLES)
def test_attacks_are_refused_without_a_trace(store: Store, sandbox: SqlSandbox, data_dir: Path, role: str) -> None:
    before = tables(store)
    for sql in attacks(data_dir):
        with pytest.raises(QueryRefused) as info:
            sandbox.run(sql, role)
        assert "\n" not in str(info.value), sql
    assert tables(store) == before
    assert store.query("EXISTS TABLE t").rows[0][0] == 0
    assert not (data_dir / "x").exists()
    assert store.query("SELECT count() FROM edges WHERE src = 'x'").rows[0][0] == 0


def test_raw_events_and_subject_refs_are_for_auditors_only(sandbox: SqlSandbox) -> None:
    assert sandbox.run("SELECT record FROM raw_events LIMIT 1", "auditor").rows
    assert sandbox.run("SELECT subject_ref FROM inference_lineage LIMIT 1", "auditor").rows
    for sql in ("SELECT record FROM raw_events", "SELECT subject_ref FROM lineage.inference_lineage",
                "SELECT 1 WHERE 'a' IN raw_events", "DESCRIBE raw_events"):
        with pytest.raises(QueryRefused):
            sandbox.run(sql, "analyst")
    anon = sandbox.run("SELECT * FROM inference_lineage_anon", "analyst")
    assert anon.rows and "subject_ref" not in anon.columns


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("sql", [
    "WITH m AS (SELECT node_id FROM nodes FINAL WHERE node_type = 'model_version') SELECT count() FROM m",
    "SELECT e.edge_type, count() FROM edges AS e JOIN nodes AS n ON n.node_id = e.dst GROUP BY e.edge_type",
    """WITH RECURSIVE walk AS (
           SELECT dst AS node_id, 0 AS depth FROM edges FINAL WHERE dst LIKE 'prediction:%'
           UNION ALL
           SELECT e.src, w.depth + 1 FROM edges AS e FINAL JOIN walk AS w ON e.dst = w.node_id WHERE w.depth < 5
       ) SELECT max(depth) FROM walk""",
    "DESCRIBE edges", "DESCRIBE TABLE lineage.nodes", "SHOW TABLES", "EXPLAIN SELECT count() FROM nodes",
    "SELECT 'Function file (children 1)\n', \"node_id\" FROM nodes LIMIT 1 -- a comment",
])
def test_reads_run_and_return_rows(sandbox: SqlSandbox, role: str, sql: str) -> None:
    assert sandbox.run(sql, role).rows


def test_limits_apply(store: Store) -> None:
    small = SqlSandbox(store, SqlSettings(max_result_rows=5))
    with pytest.raises(ClickHouseError, match="(?i)limit"):
        small.run("SELECT * FROM edges", "auditor")


_PIECES = st.sampled_from([
    "SELECT ", "1", ", ", " FROM nodes", " FROM edges", "file(", "url(", "'http://127.0.0.1:1/'", ")", "(",
    "'/etc/hostname'", "PROBE", "'LineAsString'", "length(", "upper(", "--", "\n", "/*", "*/", "'", '"', "`",
    ";", " CREATE TABLE fz (x UInt8) ENGINE=Memory", " INTO OUTFILE 'SENTINEL'", " INSERT INTO edges (src) VALUES ('fz')",
    " SETTINGS readonly=0", " WITH x AS (SELECT 1) ", " UNION ALL ", " AS a", " x ", "\\",
])


def test_mixed_texts_never_write_or_read_files(store: Store, sandbox: SqlSandbox, data_dir: Path) -> None:
    probe = data_dir / "probe.txt"
    probe.write_text(SECRET)
    sentinel = data_dir / "sentinel.out"
    before = tables(store)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_PIECES, min_size=1, max_size=14), st.sampled_from(ROLES))
    def check(pieces: list[str], role: str) -> None:
        sql = "".join(pieces).replace("PROBE", f"'{probe}'").replace("SENTINEL", str(sentinel))
        try:
            res = sandbox.run(sql, role)
        except QueryRefused:
            pass
        except Exception as exc:  # noqa: BLE001 - an accepted query may still fail in the engine
            assert SECRET not in str(exc)
        else:
            assert SECRET not in repr(res.rows)
        assert not sentinel.exists()
        assert store.query("EXISTS TABLE fz").rows[0][0] == 0

    check()
    assert tables(store) == before
    assert store.query("SELECT count() FROM edges WHERE src = 'fz'").rows[0][0] == 0


# -- the same through the sink's API, with real keys per role ----------------------------------


@pytest.fixture(scope="module")
def api_settings(stack: Any, data_dir: Path) -> Settings:
    return deployment(stack, data_dir)


def _tables(store: Store) -> set[str]:
    return {r[0] for r in store.query("SELECT name FROM system.tables WHERE database = 'lineage'").rows}


async def _post_sql(http: Any, sql: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    resp = await http.post("/api/sql", json={"sql": sql}, headers=headers)
    return resp.status, await resp.json()


@pytest.mark.parametrize("role", ["analyst", "auditor"])
def test_api_refuses_attacks_for_keys_and_leaves_no_trace(api_settings: Settings, store: Store, data_dir: Path,
                                                         role: str) -> None:
    before = tables(store)
    edges = store.query("SELECT count() FROM edges").rows[0][0]
    headers = auth_headers(api_settings, role, reason="access test")

    async def scenario() -> None:
        async with api_client(api_settings, store) as http:
            for sql in attacks(data_dir):
                status, body = await _post_sql(http, sql, headers)
                assert status == 400, (sql, body)
                assert "\n" not in body["error"] and SECRET not in body["error"]
            status, body = await _post_sql(http, "SELECT count() AS n FROM nodes", headers)
            assert status == 200 and body["rows"][0][0] > 0

    asyncio.run(scenario())
    assert not (data_dir / "x").exists()
    assert store.query("EXISTS TABLE t").rows[0][0] == 0
    assert tables(store) == before
    assert store.query("SELECT count() FROM edges").rows[0][0] == edges


def test_raw_records_are_for_auditors_not_analysts(api_settings: Settings, store: Store) -> None:
    async def scenario() -> None:
        async with api_client(api_settings, store) as http:
            status, body = await _post_sql(http, "SELECT record FROM raw_events LIMIT 1", auth_headers(api_settings, "analyst"))
            assert status == 400 and "raw_events" in body["error"]
            status, body = await _post_sql(http, "SELECT subject_ref FROM inference_lineage LIMIT 1",
                                           auth_headers(api_settings, "analyst"))
            assert status == 400
            status, body = await _post_sql(http, "SELECT count() FROM inference_lineage_anon", auth_headers(api_settings, "analyst"))
            assert status == 200
            status, body = await _post_sql(http, "SELECT count() FROM raw_events",
                                           auth_headers(api_settings, "auditor", reason="raw log review"))
            assert status == 200 and body["rows"][0][0] > 0

    asyncio.run(scenario())


def test_anonymous_401_wrong_role_403(api_settings: Settings, store: Store) -> None:
    async def scenario() -> None:
        async with api_client(api_settings, store) as http:
            for method, path in (("POST", "/api/sql"), ("GET", "/api/query/prediction?prediction_id=p3"),
                                 ("GET", "/metrics")):
                for headers in ({}, {"Authorization": "Bearer lk_forged"}, {"Authorization": "Basic YWRtaW46YWRtaW4="}):
                    resp = await http.request(method, path, json={"sql": "SELECT 1"}, headers=headers)
                    assert resp.status == 401, (path, headers)
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            emitter = auth_headers(api_settings, "emitter")
            status, _ = await _post_sql(http, "SELECT 1", emitter)
            assert status == 403
            resp = await http.get("/api/query/verify", headers=auth_headers(api_settings, "analyst"))
            assert resp.status == 403  # the raw log's chain is for auditors
            resp = await http.get("/api/query/prediction", params={"prediction_id": "p3"},
                                  headers=auth_headers(api_settings, "analyst"))
            assert resp.status == 200 and (await resp.json())["rows"]

    asyncio.run(scenario())


def test_health_is_public_and_says_nothing_internal(api_settings: Settings, store: Store, data_dir: Path) -> None:
    async def scenario() -> None:
        async with api_client(api_settings, store) as http:
            resp = await http.get("/health")
            text = await resp.text()
            assert resp.status == 200 and json.loads(text)["status"] == "ok"
            assert str(data_dir) not in text and "chdb" not in text and "dsn" not in text

    asyncio.run(scenario())


def test_metrics_need_a_key_unless_made_public(api_settings: Settings, store: Store) -> None:
    public = api_settings.model_copy(update={"api": ApiSettings(metrics_public=True)})

    async def scenario() -> None:
        async with api_client(api_settings, store) as http:
            assert (await http.get("/metrics")).status == 401
            assert (await http.get("/metrics", headers=auth_headers(api_settings, "emitter"))).status == 403
            ok = await http.get("/metrics", headers=auth_headers(api_settings, "analyst"))
            assert ok.status == 200 and "lineage_sink_" in await ok.text()
        async with api_client(public, store) as http:
            assert (await http.get("/metrics")).status == 200
            assert (await http.post("/api/sql", json={"sql": "SELECT 1"})).status == 401

    asyncio.run(scenario())


def test_auditors_give_a_reason(api_settings: Settings, store: Store) -> None:
    async def scenario() -> None:
        async with api_client(api_settings, store) as http:
            status, body = await _post_sql(http, "SELECT 1", auth_headers(api_settings, "auditor"))
            assert status == 400 and "reason" in body["error"]
            status, _ = await _post_sql(http, "SELECT 1", auth_headers(api_settings, "auditor", reason="quarterly review"))
            assert status == 200
            status, _ = await _post_sql(http, "SELECT 1", auth_headers(api_settings, "analyst"))
            assert status == 200  # analysts are not asked

    asyncio.run(scenario())
